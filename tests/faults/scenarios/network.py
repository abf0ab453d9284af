"""placeholder"""

SCENARIOS: tuple = ()
