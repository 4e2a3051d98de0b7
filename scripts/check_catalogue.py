"""Check the extension description file (``SpineSeg.json``) and the top-level ``CMakeLists.txt`` offline, with
the rules the Slicer ExtensionsIndex applies when a description file is submitted.

    python scripts/check_catalogue.py [--repo .]          # prints a report; exit 1 when a required rule fails

The rules were read from Slicer/ExtensionsIndex at commit 07f1d1b2781c7dd9f6e2a9f5521b3ed43631724c (2026-08-07):
``schemas/slicer-extension-catalog-entry-schema-v1.0.2.json`` (the JSON schema, identical to Slicer/Slicer
``Schemas/``), ``scripts/check_description_files.py`` (the checks run on a pull request),
``.pre-commit-config.yaml`` + ``.prettierrc.js`` (formatting) and ``.github/PULL_REQUEST_TEMPLATE.md`` (the
checklist). They are written out here as code; nothing is downloaded. What needs the network there is checked
against the checkout instead: an icon/screenshot URL ``https://raw.githubusercontent.com/<org>/<repo>/<branch>/<path>``
must name a PNG/JPEG/GIF file ``<path>`` of this repository, and the GitHub topic ``3d-slicer-extension`` is
left to a human (reported as "manual").

Each check returns a :class:`Finding`; ``level`` is ``"error"`` (the index's checker fails the submission),
``"advice"`` (the index flags it, a human may accept it, e.g. the ``Slicer`` prefix of the repository name) or
``"manual"`` (cannot be checked offline).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INDEX_COMMIT = "07f1d1b2781c7dd9f6e2a9f5521b3ed43631724c"

SCHEMA_URL = "https://raw.githubusercontent.com/Slicer/Slicer/main/Schemas/slicer-extension-catalog-entry-schema-v1.0.2.json#"
# Schema v1.0.2 (draft-07): required keys, and the only keys allowed (additionalProperties: false) with their types.
REQUIRED_KEYS = ("$schema", "category", "scm_url")
KEY_TYPES = {"$schema": str, "category": str, "scm_url": str, "scm_revision": str, "scm_type": str,
             "build_dependencies": list, "dicom_support_rule": str, "build_subdirectory": str, "enabled": bool,
             "tier": int}
SCM_TYPES = ("git", "local")
TIER_RANGE = (1, 5)
# A few of the categories the index accepts (its list has ~60); the description must use one it knows.
KNOWN_CATEGORIES = ("Segmentation", "Quantification", "Analysis", "Utilities", "Registration", "Informatics")
# Extensions of the index that SpineSeg may depend on (each has a <name>.json there at INDEX_COMMIT).
INDEX_EXTENSIONS = ("PyTorch",)
SCM_SCHEMES = ("git", "https")
REPOSITORY_PREFIXES = ("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_")
LICENSE_NAMES = ("LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt")
REPOSITORY_LIMIT_MB = 100
LARGE_FILE_KB = 1024            # the index's pre-commit limit for one added file
IMAGE_MAGIC = {b"\x89PNG\r\n\x1a\n": "png", b"\xff\xd8\xff": "jpeg", b"GIF87a": "gif", b"GIF89a": "gif"}


@dataclass
class Finding:
    check: str
    level: str          # "ok", "error", "advice" or "manual"
    detail: str

    def __str__(self) -> str:
        mark = {"ok": "ok    ", "error": "ERROR ", "advice": "ADVICE", "manual": "MANUAL"}[self.level]
        return f"{mark} {self.check}: {self.detail}"


def _finding(check: str, problems: list[str], ok_detail: str, level: str = "error") -> Finding:
    return Finding(check, level, "; ".join(problems)) if problems else Finding(check, "ok", ok_detail)


# --------------------------------------------------------------------------------------------------------------
# The description file

def check_format(path: Path) -> Finding:
    """Valid JSON with LF line endings, formatted the way the index's prettier hook writes it (2 spaces, one array
    item per line, final newline), no tabs, no trailing whitespace."""
    raw = path.read_bytes()
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return Finding("format", "error", f"not valid JSON: {exc}")
    problems = []
    if b"\r" in raw:
        problems.append("non-LF line endings")
    if b"\t" in raw:
        problems.append("tabs")
    if any(line != line.rstrip() for line in raw.decode("utf-8").splitlines()):
        problems.append("trailing whitespace")
    if raw.decode("utf-8") != json.dumps(data, indent=2, ensure_ascii=False) + "\n":
        problems.append("not in the index's formatting (json.dumps(indent=2) + newline, as prettier writes it)")
    return _finding("format", problems, "valid JSON, LF, prettier formatting")


def check_schema(data) -> Finding:
    """The rules of slicer-extension-catalog-entry-schema-v1.0.2."""
    if not isinstance(data, dict):
        return Finding("schema v1.0.2", "error", "the top level is not an object")
    problems = [f"required key {k!r} missing" for k in REQUIRED_KEYS if k not in data]
    problems += [f"key {k!r} not allowed by the schema" for k in data if k not in KEY_TYPES]
    for key, value in data.items():
        wanted = KEY_TYPES.get(key)
        if wanted is None:
            continue
        if not isinstance(value, wanted) or (wanted is int and isinstance(value, bool)):
            problems.append(f"{key!r} must be a JSON {wanted.__name__}, not {type(value).__name__}")
    if "scm_type" in data and data["scm_type"] not in SCM_TYPES:
        problems.append(f"scm_type must be one of {SCM_TYPES}")
    if isinstance(data.get("build_dependencies"), list) and not all(isinstance(d, str) for d in data["build_dependencies"]):
        problems.append("build_dependencies must hold strings only")
    tier = data.get("tier")
    if isinstance(tier, int) and not isinstance(tier, bool) and not TIER_RANGE[0] <= tier <= TIER_RANGE[1]:
        problems.append(f"tier must be in {TIER_RANGE[0]}..{TIER_RANGE[1]}")
    if data.get("$schema") != SCHEMA_URL:
        problems.append(f"$schema should be {SCHEMA_URL} (the current schema)")
    return _finding("schema v1.0.2", problems, "required keys present, no unknown keys, types/enum/range valid")


def check_names(extension_name: str, data: dict) -> list[Finding]:
    """The extension name (the file name) must not start with "Slicer"; the repository name should."""
    name_problems = [] if not extension_name.lower().startswith("slicer") else [
        f"extension name {extension_name!r} must not start with 'Slicer'"]
    url = str(data.get("scm_url", "")).strip().strip("/")
    repo_name = Path(urllib.parse.urlsplit(url).path.split("/")[-1]).stem
    repo_problems = [] if repo_name.startswith(REPOSITORY_PREFIXES) else [
        f"repository name {repo_name!r} should start with 'Slicer' (e.g. Slicer{repo_name}); the index's checker "
        "flags it unless the maintainers add an exception"]
    return [_finding("extension name", name_problems, f"{extension_name!r}"),
            _finding("repository name", repo_problems, f"{repo_name!r}", level="advice")]


def check_scm_url(data: dict) -> Finding:
    url = str(data.get("scm_url", ""))
    problems = []
    if "://" not in url:
        problems.append("scm_url does not match scheme://host/path")
    elif urllib.parse.urlsplit(url).scheme not in SCM_SCHEMES:
        problems.append(f"scm_url scheme must be one of {SCM_SCHEMES}")
    return _finding("scm_url", problems, url)


def check_category(data: dict, cmake: dict) -> Finding:
    category = data.get("category")
    problems = [] if category in KNOWN_CATEGORIES else [f"category {category!r} is not one the index accepts"]
    if cmake.get("EXTENSION_CATEGORY") != category:
        problems.append(f"EXTENSION_CATEGORY {cmake.get('EXTENSION_CATEGORY')!r} differs from {category!r}")
    return _finding("category", problems, f"{category!r}, same as EXTENSION_CATEGORY")


def check_dependencies(data: dict, cmake: dict) -> Finding:
    """build_dependencies name extensions of the index and equal EXTENSION_DEPENDS ("NA" = none)."""
    listed = list(data.get("build_dependencies", []))
    depends = cmake.get("EXTENSION_DEPENDS", "NA").split()
    declared = [] if depends == ["NA"] else depends
    problems = [f"{d!r} is not an extension of the index" for d in listed if d not in INDEX_EXTENSIONS]
    if sorted(listed) != sorted(declared):
        problems.append(f"build_dependencies {listed} differ from EXTENSION_DEPENDS {declared}")
    return _finding("dependencies", problems, f"{listed} = EXTENSION_DEPENDS")


# --------------------------------------------------------------------------------------------------------------
# The repository (what the index's checker reads from a clone)

def cmake_metadata(text: str) -> dict:
    """project() name and the EXTENSION_* values, found with the same patterns as the index's checker (the icon
    and screenshot values must be quoted strings on one line)."""
    meta = {}
    project = re.findall(r'project\s*\(\s*([^\s\)\n\r]+)', text, re.IGNORECASE | re.MULTILINE)
    if project:
        meta["project"] = project[0].strip().strip("\"'")
    icon = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', text, re.IGNORECASE | re.MULTILINE)
    if icon:
        meta["EXTENSION_ICONURL"] = icon[0].strip()
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', text, re.IGNORECASE | re.MULTILINE)
    if shots:
        meta["EXTENSION_SCREENSHOTURLS"] = shots[0].split()
    for key in ("EXTENSION_HOMEPAGE", "EXTENSION_CATEGORY", "EXTENSION_DEPENDS", "EXTENSION_DESCRIPTION",
                "EXTENSION_CONTRIBUTORS"):
        match = re.search(rf'set\s*\(\s*{key}\s+(?:"([^"]*)"|([^\s\)]+))\s*\)', text)
        if match:
            meta[key] = match.group(1) if match.group(1) is not None else match.group(2)
    return meta


def url_to_path(url: str, owner_repo: str, branch: str) -> str | None:
    """``https://raw.githubusercontent.com/<owner>/<repo>/<branch>/<path>`` -> ``<path>``; None for another
    repository, branch or host."""
    parts = urllib.parse.urlsplit(url)
    prefix = f"/{owner_repo}/{branch}/"
    if parts.scheme != "https" or parts.netloc != "raw.githubusercontent.com" or not parts.path.startswith(prefix):
        return None
    return urllib.parse.unquote(parts.path[len(prefix):])


def check_image_url(repo: Path, url: str, owner_repo: str, branch: str, what: str) -> Finding:
    """The URL starts with http, has an image suffix and names an image file of this repository."""
    if not url.startswith("http"):
        return Finding(what, "error", f"{url!r} is not a URL starting with 'http'")
    rel = url_to_path(url, owner_repo, branch)
    if rel is None:
        return Finding(what, "error", f"{url} is not https://raw.githubusercontent.com/{owner_repo}/{branch}/<path>")
    path = repo / rel
    if not path.is_file():
        return Finding(what, "error", f"{url}: {rel} does not exist in the repository")
    head = path.read_bytes()[:8]
    kind = next((k for magic, k in IMAGE_MAGIC.items() if head.startswith(magic)), None)
    problems = [] if kind else [f"{rel} is not a PNG, JPEG or GIF image"]
    if not rel.lower().endswith((".png", ".jpg", ".jpeg", ".gif")):
        problems.append(f"{rel} has no image file suffix")
    if path.stat().st_size > LARGE_FILE_KB * 1024:
        problems.append(f"{rel} is larger than {LARGE_FILE_KB} kB")
    return _finding(what, problems, f"{rel} ({kind}, {path.stat().st_size // 1024} kB)")


def check_cmakelists(repo: Path, extension_name: str, data: dict) -> list[Finding]:
    cmake_path = repo / "CMakeLists.txt"
    if not cmake_path.is_file():
        return [Finding("CMakeLists.txt", "error", "no CMakeLists.txt in the repository root")]
    meta = cmake_metadata(cmake_path.read_text(encoding="utf-8", errors="ignore"))
    findings = [_finding("project name", [] if meta.get("project") == extension_name else [
        f"project({meta.get('project')}) does not match the description file name {extension_name!r}"],
        f"project({extension_name})")]
    url_path = urllib.parse.urlsplit(str(data.get("scm_url", ""))).path.strip("/")
    owner_repo = url_path[:-4] if url_path.endswith(".git") else url_path
    branch = str(data.get("scm_revision", "main"))
    homepage = meta.get("EXTENSION_HOMEPAGE", "").rstrip("/")
    findings.append(_finding("homepage", [] if homepage == f"https://github.com/{owner_repo}" else [
        f"EXTENSION_HOMEPAGE {homepage!r} is not the repository of scm_url"], homepage))
    if "EXTENSION_ICONURL" in meta:
        findings.append(check_image_url(repo, meta["EXTENSION_ICONURL"], owner_repo, branch, "icon"))
    else:
        findings.append(Finding("icon", "error", "no EXTENSION_ICONURL (a quoted URL on one line) in CMakeLists.txt"))
    shots = meta.get("EXTENSION_SCREENSHOTURLS", [])
    if not shots:
        findings.append(Finding("screenshots", "error", "no EXTENSION_SCREENSHOTURLS (quoted, \"...\") with no "
                                                        "space before ')') in CMakeLists.txt"))
    for i, url in enumerate(shots, 1):
        findings.append(check_image_url(repo, url, owner_repo, branch, f"screenshot {i}"))
    findings.append(check_category(data, meta))
    findings.append(check_dependencies(data, meta))
    return findings


def repository_files(repo: Path) -> list[Path]:
    """Files a clone would hold: tracked plus untracked-but-not-ignored (about to be committed)."""
    out = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=repo, capture_output=True,
                         check=True).stdout.decode()
    return [repo / p for p in out.split("\0") if p and (repo / p).is_file()]


def check_repository(repo: Path) -> list[Finding]:
    license_file = next((n for n in LICENSE_NAMES if (repo / n).is_file()), None)
    files = repository_files(repo)
    total_mb = sum(p.stat().st_size for p in files) / 2**20
    return [_finding("license file", [] if license_file else ["no license file in the repository root"],
                     str(license_file)),
            _finding("repository size", [] if total_mb <= REPOSITORY_LIMIT_MB else [
                f"{total_mb:.1f} MB exceeds {REPOSITORY_LIMIT_MB} MB"], f"{total_mb:.1f} MB of {REPOSITORY_LIMIT_MB}"),
            Finding("GitHub topic", "manual", "the repository must carry the topic '3d-slicer-extension' "
                                              "(checked online by the index)")]


def check_all(repo: Path = REPO, description: Path | None = None) -> list[Finding]:
    """Every check, on ``description`` (default: the one ``<name>.json`` in the repository root)."""
    if description is None:
        candidates = [p for p in repo.glob("*.json") if p.stem[:1].isupper()]
        if len(candidates) != 1:
            return [Finding("description file", "error", f"expected one <ExtensionName>.json in {repo}, "
                                                         f"found {[p.name for p in candidates]}")]
        description = candidates[0]
    findings = [check_format(description)]
    if findings[0].level == "error" and findings[0].detail.startswith("not valid JSON"):
        return findings
    data = json.loads(description.read_text(encoding="utf-8"))
    findings.append(check_schema(data))
    if not isinstance(data, dict):
        return findings
    findings += check_names(description.stem, data)
    findings.append(check_scm_url(data))
    findings += check_cmakelists(repo, description.stem, data)
    findings += check_repository(repo)
    return findings


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo", type=Path, default=REPO, help="repository root (default: this checkout)")
    parser.add_argument("--description", type=Path, help="description file (default: <Name>.json in the root)")
    args = parser.parse_args(argv)
    findings = check_all(args.repo.resolve(), args.description)
    print(f"Extension description check (rules of Slicer/ExtensionsIndex@{INDEX_COMMIT[:12]}, schema v1.0.2)")
    for finding in findings:
        print(finding)
    errors = [f for f in findings if f.level == "error"]
    print(f"{len(errors)} error(s), {sum(f.level == 'advice' for f in findings)} advice, "
          f"{sum(f.level == 'manual' for f in findings)} manual")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
