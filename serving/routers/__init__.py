"""One router per resource; `serving.app.ROUTERS` lists the ones the app includes."""
