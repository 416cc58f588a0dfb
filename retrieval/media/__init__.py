"""Reading inputs: images and sounds decoded with limits, corpus and anchor tables."""
