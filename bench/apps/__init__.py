"""The apps every server under test serves: one ASGI 3 app and one WSGI app, same routes."""
