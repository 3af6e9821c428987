{{ cookiecutter.description | py_str }}

__version__ = {{ cookiecutter.version | pep440 | py_str }}

#: Default instance capacity: how many tasklets may run at once against one
#: sworker instance (``[worker.res] Capacity = { V = ... }`` in grain.toml).
DEFAULT_CAPACITY = {{ cookiecutter.capacity | int }}
