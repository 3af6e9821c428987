"""The demo and test harness: none of it runs in production.

It holds a real Grain on this machine (``local_grain``: Gnaw and, for a server
sworker, a worker), what runs beside it (``environment``), the stand-in for your
server or service, and ``python -m {{ cookiecutter.package_name }}.demo``. The sworker
never imports it: delete the stand-in once the sworker runs your own server or service.
"""
