"""Side panels of the main window: metadata, analysis controls, results numbers, result plots."""
