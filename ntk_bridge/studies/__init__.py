"""The studies: each runs the closed forms (and finite networks) over a grid and returns tidy
frames, summaries and verdicts (:mod:`.protocol` states the shape they share): the depth sweep, the
depth law, the regime map, the feature map, kernel few-shot on real episodes (with its label
spaces), and the trainer comparison. No study prints or parses flags; commands do.
"""
