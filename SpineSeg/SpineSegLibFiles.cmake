# The files of SpineSegLib to install with the extension: every Python file and every package-data file
# (resources/: models, label tables, recipes, samples), found where the wheel takes them from. Globbed, never
# listed by hand; Testing/test_packaging.py runs this file with `cmake -P` and compares it with the wheel.
#
#   spineseg_lib_files(<scripts-var> <resources-var>)   paths relative to this folder (SpineSeg/)
function(spineseg_lib_files scripts_var resources_var)
  set(_base ${CMAKE_CURRENT_LIST_DIR})
  if(DEFINED SPINESEG_LIB_BASE)
    set(_base ${SPINESEG_LIB_BASE})
  endif()
  if(CMAKE_SCRIPT_MODE_FILE)
    file(GLOB_RECURSE _files RELATIVE ${_base} ${_base}/SpineSegLib/*)
  else()  # a configured build re-globs when files are added or removed
    file(GLOB_RECURSE _files RELATIVE ${_base} CONFIGURE_DEPENDS ${_base}/SpineSegLib/*)
  endif()
  list(FILTER _files EXCLUDE REGEX "(^|/)(__pycache__|\\.pytest_cache)/|\\.py[co]$|(^|/)\\.")
  list(SORT _files)
  set(_scripts)
  set(_resources)
  foreach(_f IN LISTS _files)
    if(_f MATCHES "\\.py$")
      list(APPEND _scripts ${_f})
    else()
      list(APPEND _resources ${_f})
    endif()
  endforeach()
  set(${scripts_var} ${_scripts} PARENT_SCOPE)
  set(${resources_var} ${_resources} PARENT_SCOPE)
endfunction()
