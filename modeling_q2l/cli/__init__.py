"""The command line: every command's arguments (`arguments`) and its entry function (`commands`)."""
