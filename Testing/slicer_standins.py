"""Stand-ins for Qt, CTK and the qMRML/qSlicer widget classes, and for ``slicer.app``, for Testing/slicer_harness.py.

Only what has no Python implementation outside a Slicer application is stood in for; MRML and Slicer's Python
layer stay real (see the harness). The widgets keep the state the parameter-node GUI connectors read and write
(checked, value within a range and rounded to ``decimals``, current index, path, node) and emit the signals a real
widget emits when that state changes, with as many arguments as the slot accepts (as PythonQt does). A
``QUiLoader`` builds them from the real ``.ui`` XML. Any other member is a no-op, recorded in :data:`GENERIC_USES`.

Console use (inside the harness's process, after ``slicer_harness.install()``)::

    import qt
    box = qt.QCheckBox(); box.checkable = True
    box.connect("toggled(bool)", print); box.checked = True     # prints True
"""

from __future__ import annotations

import atexit
import inspect
import os
import shutil
import sys
import tempfile
import types
import xml.etree.ElementTree as ET

SLICER_VERSION = "5.12.3"
#: "Class.member" names of stand-in members that are not modelled (no-ops), in first-use order
GENERIC_USES: dict[str, None] = {}


# ---------------------------------------------------------------------------------------------------------------
# Qt / CTK stand-ins
# ---------------------------------------------------------------------------------------------------------------
class _Member:
    """A member the stand-ins do not model: callable (returns None), usable as a signal, falsy when read."""

    def __init__(self, owner: str, name: str):
        self._slots = []
        self._key = f"{owner}.{name}"
        if not name.endswith(("Changed", "clicked", "toggled", "timeout", "Unloaded")):
            GENERIC_USES.setdefault(self._key, None)

    def __call__(self, *args, **kwargs):
        return None

    def __bool__(self):
        return False

    def connect(self, *args):
        self._slots.append(args[-1])
        GENERIC_USES.pop(self._key, None)      # a signal: connected and emitted, so modelled
        return True

    def disconnect(self, *args):
        if args and args[-1] in self._slots:
            self._slots.remove(args[-1])
        return True

    def emit(self, *args):
        for slot in list(self._slots):
            slot(*args[:_arity(slot, len(args))])


def _arity(slot, available: int) -> int:
    """How many of a signal's arguments ``slot`` takes: PythonQt passes a slot only as many as it accepts."""
    try:
        params = inspect.signature(slot).parameters.values()
    except (TypeError, ValueError):
        return available
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return available
    return min(available, sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params))


class _QtMeta(type):
    """Class-level look-ups of the stand-in classes: enum constants (``QMessageBox.Ok``) are distinct ints,
    static functions (``QApplication.setOverrideCursor``) are no-ops."""

    _constants: dict[str, int] = {}

    def __getattr__(cls, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name[:1].isupper():
            return _QtMeta._constants.setdefault(f"{cls.__name__}.{name}", 1 << (len(_QtMeta._constants) % 30))
        return _Member(cls.__name__, name)


class QObject(metaclass=_QtMeta):
    def __init__(self, *args, **kwargs):
        d = self.__dict__
        d["_children"] = []
        d["_parent"] = None
        d["_props"] = {}
        d["_blocked"] = False
        d["name"] = ""
        parent = next((a for a in args if isinstance(a, QObject)), None)
        if parent is not None:
            self.setParent(parent)
        text = next((a for a in args if isinstance(a, str)), None)
        if text is not None:
            d["text"] = text

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        member = _Member(type(self).__name__, name)
        self.__dict__[name] = member
        return member

    # identity and tree
    @property
    def objectName(self):
        return self.name

    def setObjectName(self, name):
        self.__dict__["name"] = name

    def parent(self):
        return self._parent

    def setParent(self, parent):
        if self._parent is not None and self in self._parent._children:
            self._parent._children.remove(self)
        self.__dict__["_parent"] = parent
        if parent is not None:
            parent._children.append(self)

    def children(self):
        return list(self._children)

    def findChildren(self, cls=None, name=None):
        out = []
        for child in self._children:
            if (cls is None or isinstance(child, cls)) and (not name or child.name == name):
                out.append(child)
            out.extend(child.findChildren(cls, name))
        return out

    def findChild(self, cls, name=""):
        found = self.findChildren(cls, name)
        return found[0] if found else None

    def className(self):
        return type(self).__name__

    def inherits(self, name):
        return any(c.__name__ == name for c in type(self).__mro__)

    def isWidgetType(self):
        return False

    # properties and signals
    def property(self, name):
        if name in self._props:
            return self._props[name]
        value = self.__dict__.get(name)
        return None if isinstance(value, _Member) else value

    def setProperty(self, name, value):
        self._props[name] = value
        return True

    def blockSignals(self, block):
        previous = self._blocked
        self.__dict__["_blocked"] = bool(block)
        return previous

    def signalsBlocked(self):
        return self._blocked

    def connect(self, signal, *args):
        """PythonQt's ``obj.connect("clicked(bool)", slot)`` (also ``obj.connect(signal, receiver, slot)``)."""
        return getattr(self, signal.split("(")[0]).connect(args[-1])

    def disconnect(self, signal, *args):
        return getattr(self, signal.split("(")[0]).disconnect(*args)

    def _emit(self, signal, *args):
        if not self._blocked:
            getattr(self, signal).emit(*args)

    def deleteLater(self):
        self.setParent(None)


class QWidget(QObject):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        d = self.__dict__
        d["enabled"] = True
        d["visible"] = True
        d["toolTip"] = ""
        d["_layout"] = None

    def isWidgetType(self):
        return True

    def setLayout(self, layout):
        self.__dict__["_layout"] = layout
        layout.__dict__["_owner"] = self
        layout.setParent(self)

    def layout(self):
        return self._layout

    def setEnabled(self, value):
        self.enabled = bool(value)

    def setVisible(self, value):
        self.visible = bool(value)

    def show(self):
        self.visible = True

    def hide(self):
        self.visible = False

    def isVisible(self):
        return self.visible


class QLayout(QObject):
    def _adopt(self, widget):
        owner = self.__dict__.get("_owner") or self.parent()
        if isinstance(widget, QObject) and owner is not None:
            widget.setParent(owner)

    def addWidget(self, widget, *args):
        self._adopt(widget)

    def addLayout(self, layout, *args):
        layout.setParent(self)

    def addRow(self, *items):
        for item in items:
            if isinstance(item, QWidget):
                self._adopt(item)
            elif isinstance(item, QLayout):
                item.setParent(self)

    def addItem(self, *args):
        pass


class QVBoxLayout(QLayout):
    pass


class QHBoxLayout(QLayout):
    pass


class QFormLayout(QLayout):
    pass


class QGridLayout(QLayout):
    pass


class QSettings(QObject):
    """Settings kept in memory for the process (empty at start: every key takes its default)."""

    _store: dict = {}

    def value(self, key, default=None):
        return self._store.get(key, default)

    def setValue(self, key, value):
        self._store[key] = value

    def contains(self, key):
        return key in self._store

    def remove(self, key):
        self._store.pop(key, None)


class QIcon(QObject):
    pass


class QColor(QObject):
    pass


class QTimer(QObject):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(interval=0, singleShot=False, _active=False)

    def setInterval(self, msec):
        self.interval = msec

    def start(self, *args):
        self.__dict__["_active"] = True

    def stop(self):
        self.__dict__["_active"] = False

    def isActive(self):
        return self._active


class QFile(QObject):
    ReadOnly = 1

    def __init__(self, path="", *args):
        super().__init__()
        self.__dict__["path"] = str(path)

    def exists(self):
        return os.path.isfile(self.path)

    def open(self, mode):
        return self.exists()

    def close(self):
        pass


class QFileDialog(QWidget):
    @staticmethod
    def getSaveFileName(*args, **kwargs):
        return ""

    @staticmethod
    def getOpenFileName(*args, **kwargs):
        return ""

    @staticmethod
    def getExistingDirectory(*args, **kwargs):
        return ""


class QAbstractButton(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.setdefault("text", "")
        self.__dict__.update(checkable=False, _checked=False)

    @property
    def checked(self):
        return self._checked

    @checked.setter
    def checked(self, value):
        value = bool(value) and self.checkable
        if value != self._checked:
            self.__dict__["_checked"] = value
            self._emit("toggled", value)
            self._emit("stateChanged", 2 if value else 0)

    def setChecked(self, value):
        self.checked = value

    def isChecked(self):
        return self.checked

    def setCheckable(self, value):
        self.checkable = bool(value)

    def click(self):
        if self.enabled:
            if self.checkable:
                self.checked = not self.checked
            self._emit("clicked", self.checked)


class QPushButton(QAbstractButton):
    pass


class QToolButton(QAbstractButton):
    pass


class QRadioButton(QAbstractButton):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkable = True


class QCheckBox(QAbstractButton):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkable = True


class Ranged(QWidget):
    """A value widget: a value kept within [minimum, maximum] and rounded to ``decimals`` (as Qt's spin boxes do);
    changing it emits ``valueChanged``."""

    integer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(_minimum=0, _maximum=99 if self.integer else 99.99, _value=0,
                             _decimals=0 if self.integer else 2, singleStep=1)

    def _fit(self, value):
        value = min(max(value, self._minimum), self._maximum)
        return int(round(value)) if self.integer else round(float(value), self._decimals)

    @property
    def value(self):
        return self._value

    @value.setter
    def value(self, value):
        value = self._fit(value)
        if value != self._value:
            self.__dict__["_value"] = value
            self._emit("valueChanged", value)

    def setValue(self, value):
        self.value = value

    @property
    def minimum(self):
        return self._minimum

    @minimum.setter
    def minimum(self, value):
        self.setRange(value, max(value, self._maximum))

    @property
    def maximum(self):
        return self._maximum

    @maximum.setter
    def maximum(self, value):
        self.setRange(min(value, self._minimum), value)

    def setMinimum(self, value):
        self.minimum = value

    def setMaximum(self, value):
        self.maximum = value

    def setRange(self, low, high):
        self.__dict__.update(_minimum=low, _maximum=high)
        self.value = self._value

    @property
    def decimals(self):
        return self._decimals

    @decimals.setter
    def decimals(self, value):
        if not self.integer:
            self.__dict__["_decimals"] = int(value)
            self.value = self._value


class QSpinBox(Ranged):
    integer = True


class QSlider(Ranged):
    integer = True


class QDoubleSpinBox(Ranged):
    pass


class QProgressBar(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(value=0, minimum=0, maximum=100)


class QLabel(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.setdefault("text", "")


class QLineEdit(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.setdefault("_text", "")

    @property
    def text(self):
        return self._text

    @text.setter
    def text(self, value):
        if value != self._text:
            self.__dict__["_text"] = value
            self._emit("textChanged", value)


class QPlainTextEdit(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["plainText"] = ""

    def appendPlainText(self, text):
        self.plainText = (self.plainText + "\n" if self.plainText else "") + text

    def setPlainText(self, text):
        self.plainText = text

    def toPlainText(self):
        return self.plainText

    def clear(self):
        self.plainText = ""


class QTextEdit(QPlainTextEdit):
    pass


class QComboBox(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(_items=[], _index=-1)

    def _set_index(self, index):
        index = index if -1 <= index < len(self._items) else -1
        if index != self._index:
            self.__dict__["_index"] = index
            self._emit("currentIndexChanged", index)

    @property
    def currentIndex(self):
        return self._index

    @currentIndex.setter
    def currentIndex(self, index):
        self._set_index(index)

    def setCurrentIndex(self, index):
        self._set_index(index)

    def addItem(self, text, data=None):
        self._items.append((text, data))
        if self._index < 0:
            self._set_index(0)

    def addItems(self, texts):
        for text in texts:
            self.addItem(text)

    def clear(self):
        self._items.clear()
        self._set_index(-1)

    def count(self):
        return len(self._items)

    def itemText(self, index):
        return self._items[index][0] if 0 <= index < len(self._items) else ""

    def itemData(self, index, *args):
        return self._items[index][1] if 0 <= index < len(self._items) else None

    @property
    def currentText(self):
        return self.itemText(self._index)

    def currentData(self, *args):
        return self.itemData(self._index)

    def findText(self, text, *args):
        return next((i for i, (t, _) in enumerate(self._items) if t == text), -1)

    def findData(self, data, *args):
        return next((i for i, (_, d) in enumerate(self._items) if d == data), -1)


class QMessageBox(QWidget):
    pass


class QDialog(QWidget):
    pass


class QApplication(QObject):
    pass


# CTK -------------------------------------------------------------------------------------------------------------
class ctkCheckBox(QCheckBox):
    pass


class ctkCheckablePushButton(QPushButton):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.checkBoxControlsButtonToggleState = False


class ctkCollapsibleButton(QAbstractButton):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["collapsed"] = False


class ctkSliderWidget(Ranged):
    pass


class ctkDoubleSpinBox(Ranged):
    pass


class ctkComboBox(QComboBox):
    pass


class ctkPathLineEdit(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_path"] = ""

    @property
    def currentPath(self):
        return self._path

    @currentPath.setter
    def currentPath(self, value):
        if value != self._path:
            self.__dict__["_path"] = value
            self._emit("currentPathChanged", value)

    def setCurrentPath(self, value):
        self.currentPath = value


class ctkDirectoryButton(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["directory"] = ""


# qMRML / qSlicer widgets (in Slicer they live in the ``slicer`` namespace) --------------------------------------
class qMRMLWidget(QWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_scene"] = None

    def setMRMLScene(self, scene):
        self.__dict__["_scene"] = scene
        self._emit("mrmlSceneChanged", scene)

    def mrmlScene(self):
        return self._scene


class qSlicerWidget(qMRMLWidget):
    pass


class qMRMLNodeComboBox(qMRMLWidget):
    """A node selector: holds a node of the scene it was given whose class is one of ``nodeTypes``; setting any
    other node makes the selection empty (as the real selector, which finds no such item)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__.update(nodeTypes=[], noneEnabled=False, _node=None, rejected=[])

    def currentNode(self):
        return self._node

    def currentNodeID(self):
        return self._node.GetID() if self._node is not None else ""

    def setCurrentNode(self, node):
        if node is not None:
            acceptable = (self._scene is not None and node.GetScene() is self._scene
                          and any(node.IsA(t) for t in self.nodeTypes))
            if not acceptable:
                self.rejected.append(node.GetClassName())
                node = None
        if node is not self._node:
            self.__dict__["_node"] = node
            self._emit("currentNodeChanged", node)

    def setCurrentNodeID(self, node_id):
        self.setCurrentNode(self._scene.GetNodeByID(node_id) if self._scene is not None and node_id else None)


class qMRMLTableView(qMRMLWidget):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_table"] = None

    def setMRMLTableNode(self, node):
        self.__dict__["_table"] = node

    def mrmlTableNode(self):
        return self._table


class qSlicerMarkupsPlaceWidget(qSlicerWidget):
    """The markups place widget: the point list it places into (``placeMultipleMarkups`` is a plain attribute)."""

    ForcePlaceSingleMarkup, ForcePlaceMultipleMarkups, ShowPlaceMultipleMarkupsOption = 1, 2, 0

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_node"] = None

    def setCurrentNode(self, node):
        self.__dict__["_node"] = node

    def currentNode(self):
        return self._node

    def currentMarkupsNode(self):
        return self._node


class qMRMLSliceWidget(qMRMLWidget):
    def __init__(self, slice_node=None, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.__dict__["_slice_node"] = slice_node

    def mrmlSliceNode(self):
        return self._slice_node

    def sliceLogic(self):
        return self.__dict__.get("_slice_logic")


def standin_module(name: str, classes: dict, prefixes: tuple, base=None, module=None) -> types.ModuleType:
    """A stand-in module (or ``module``, given the classes): ``classes``, plus a subclass of ``base`` (QWidget)
    made once, on demand, for any other class name with one of ``prefixes`` (recorded in GENERIC_USES)."""
    if module is None:
        module = types.ModuleType(name, f"stand-in for {name} (Testing/slicer_standins.py)")
    module.__dict__.update(classes)

    def __getattr__(attr):
        if attr.startswith(prefixes):
            GENERIC_USES.setdefault(f"{name}.{attr}", None)
            cls = _QtMeta(attr, (base or QWidget,), {})
            setattr(module, attr, cls)
            return cls
        raise AttributeError(f"stand-in module {name!r} has no attribute {attr!r}")

    module.__getattr__ = __getattr__
    return module


QT_CLASSES = {c.__name__: c for c in (
    QObject, QWidget, QLayout, QVBoxLayout, QHBoxLayout, QFormLayout, QGridLayout, QSettings, QIcon, QColor, QTimer,
    QFile, QFileDialog, QAbstractButton, QPushButton, QToolButton, QRadioButton, QCheckBox, QSpinBox, QSlider,
    QDoubleSpinBox, QProgressBar, QLabel, QLineEdit, QPlainTextEdit, QTextEdit, QComboBox, QMessageBox, QDialog,
    QApplication)}
CTK_CLASSES = {c.__name__: c for c in (
    ctkCheckBox, ctkCheckablePushButton, ctkCollapsibleButton, ctkSliderWidget, ctkDoubleSpinBox, ctkComboBox,
    ctkPathLineEdit, ctkDirectoryButton)}
SLICER_WIDGETS = {c.__name__: c for c in (qMRMLWidget, qSlicerWidget, qMRMLNodeComboBox, qMRMLTableView,
                                          qSlicerMarkupsPlaceWidget, qMRMLSliceWidget)}


# ---------------------------------------------------------------------------------------------------------------
# QUiLoader: stand-in widgets from the real .ui XML
# ---------------------------------------------------------------------------------------------------------------
def _widget_class(class_name: str):
    qt, ctk, slicer = sys.modules["qt"], sys.modules["ctk"], sys.modules["slicer"]
    if class_name.startswith("ctk"):
        return getattr(ctk, class_name)
    if class_name.startswith(("qMRML", "qSlicer")):
        return getattr(slicer, class_name)
    return getattr(qt, class_name)


def _property_value(prop: ET.Element):
    value = prop[0] if len(prop) else None
    if value is None:
        return None
    if value.tag == "bool":
        return value.text == "true"
    if value.tag == "number":
        return int(value.text)
    if value.tag == "double":
        return float(value.text)
    if value.tag in ("string", "cstring", "enum", "set"):
        return value.text or ""
    if value.tag == "stringlist":
        return [s.text or "" for s in value.findall("string")]
    return None      # geometry, size policies, fonts ...: not modelled


def _apply_properties(obj: QObject, element: ET.Element):
    for prop in element.findall("property"):
        name, value = prop.get("name"), _property_value(prop)
        if prop.get("stdset") == "0":
            obj.setProperty(name, value)
        elif value is not None:
            setattr(obj, name, value)


def _build(element: ET.Element, parent):
    if element.tag == "widget":
        obj = _widget_class(element.get("class"))()
        obj.setObjectName(element.get("name") or "")
        if parent is not None:
            (parent._adopt(obj) if isinstance(parent, QLayout) else obj.setParent(parent))
        _apply_properties(obj, element)
        if isinstance(obj, QComboBox):
            for item in element.findall("item"):
                text = next((_property_value(p) for p in item.findall("property") if p.get("name") == "text"), "")
                obj.addItem(text)
    elif element.tag == "layout":
        obj = _widget_class(element.get("class"))()
        obj.setObjectName(element.get("name") or "")
        if isinstance(parent, QWidget):
            parent.setLayout(obj)
        elif parent is not None:
            obj.setParent(parent)
            obj.__dict__["_owner"] = parent.__dict__.get("_owner") or parent.parent()
    else:
        return None
    for child in element:
        if child.tag in ("widget", "layout"):
            _build(child, obj)
        elif child.tag == "item":
            for grandchild in child:
                _build(grandchild, obj)
    return obj


class QUiLoader(QObject):
    """Builds stand-in widgets from a .ui file: every widget and layout with its class, object name and simple
    properties, and the .ui's signal/slot connections."""

    def load(self, qfile, parent=None):
        root = ET.parse(qfile.path).getroot()
        top = _build(root.find("widget"), parent)
        named = {w.name: w for w in [top] + top.findChildren(QObject) if w.name}
        connections = root.find("connections")
        for c in (connections if connections is not None else []):
            sender, receiver = named[c.find("sender").text], named[c.find("receiver").text]
            slot = c.find("slot").text.split("(")[0]
            getattr(sender, c.find("signal").text.split("(")[0]).connect(
                lambda *args, _r=receiver, _s=slot: getattr(_r, _s)(*args))
        return top


QT_CLASSES["QUiLoader"] = QUiLoader


# ---------------------------------------------------------------------------------------------------------------
# slicer.app
# ---------------------------------------------------------------------------------------------------------------
class _ModuleManager(QObject):
    def module(self, name):
        slicer = sys.modules["slicer"]
        return getattr(slicer.modules, name.lower(), None)


class _LayoutManager(QObject):
    """Slice widgets on demand, each holding a real slice node made by a real ``vtkMRMLSliceLogic``."""

    def __init__(self, scene):
        super().__init__()
        self.__dict__.update(_scene=scene, _widgets={})

    def sliceViewNames(self):
        return ["Red", "Yellow", "Green"]

    def sliceWidget(self, name):
        if name not in self.sliceViewNames():
            return None
        if name not in self._widgets:
            slicer = sys.modules["slicer"]
            logic = slicer.vtkMRMLSliceLogic()
            logic.SetMRMLScene(self._scene)
            node = logic.AddSliceNode(name)
            {"Red": node.SetOrientationToAxial, "Yellow": node.SetOrientationToSagittal,
             "Green": node.SetOrientationToCoronal}[name]()
            widget = qMRMLSliceWidget(node)
            widget.__dict__["_slice_logic"] = logic
            self._widgets[name] = widget
        return self._widgets[name]


class App(QObject):
    """``slicer.app`` as far as the module files and Slicer's Python layer use it."""

    def __init__(self, scene):
        super().__init__()
        self._temp = tempfile.mkdtemp(prefix="spineseg-harness-")
        atexit.register(shutil.rmtree, self._temp, True)
        self.__dict__.update(
            applicationName="Slicer", applicationVersion=SLICER_VERSION, majorVersion=5, minorVersion=12,
            cachePath=os.path.join(self._temp, "cache"), temporaryPath=os.path.join(self._temp, "temp"),
            documentationBaseUrl="https://slicer.readthedocs.io/en/5.12/", _scene=scene,
            _module_manager=_ModuleManager(), _layout_manager=_LayoutManager(scene), _settings=QSettings())

    def mrmlScene(self):
        return self._scene

    def moduleManager(self):
        return self._module_manager

    def layoutManager(self):
        return self._layout_manager

    def settings(self):
        return self._settings

    def userSettings(self):
        return self._settings

    def testingEnabled(self):
        return True

    def processEvents(self, *args):
        pass

    def translate(self, context, text):
        return text

    def moduleDocumentationUrl(self, name):
        return self.documentationBaseUrl + name
