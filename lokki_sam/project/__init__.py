"""New projects: lokki-sam's template (`template`, a link to cookiecutter-lokki/ in a checkout), the
pin of the lokki-sam a project installs (`pin.py`), and wheels written without a build backend."""
