"""The console's own modules besides the app, its screens and widgets (docs/architecture.md)."""
