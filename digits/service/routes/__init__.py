"""The routes, one router per area: predictions, the pages, corrections, and operations. main.py includes them."""
