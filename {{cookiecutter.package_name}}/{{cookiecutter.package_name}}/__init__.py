{{ cookiecutter.description | py_str }}

from . import grain_compat

__version__ = {{ cookiecutter.version | pep440 | py_str }}

#: Default instance capacity: how many tasklets may run at once against one
#: sworker instance (``[worker.res] Capacity = { V = ... }`` in grain.toml).
DEFAULT_CAPACITY = {{ cookiecutter.capacity | int }}

# Before any head starts (a head imports its tasklets, and so this package, first): losing an
# instance must not crash it. On any Grain but the one it was verified on, it patches nothing.
grain_compat.install()
