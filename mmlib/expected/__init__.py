"""What the exercise checks compare against, one module per lesson (`mmlib.expected.lesson01`, ...).

Each expected value is computed here by a route of its own (often a different one from the
lesson's), so a check does not merely compare the lesson's code with itself.
"""
