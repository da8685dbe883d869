"""Widgets of the Textual console, and the view state they draw from."""
