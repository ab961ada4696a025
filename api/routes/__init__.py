"""One router per resource; api.main collects them."""
