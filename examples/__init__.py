"""The examples: ``quickstart.py`` (a script) and the web apps ``webapp`` and ``async_webapp``."""
