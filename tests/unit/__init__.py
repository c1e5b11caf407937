"""Single functions and modules: no app, no process, no accuracy measured."""
