"""The drop folder: inbox/<campaign> -> settle -> claim -> processed | rejected | failed."""
