"""Course material that ships with the package: the exercises, their reference solutions
and the autograder (``minivae exercise``). The lecture notebooks live in the repository's
top-level ``course/`` folder."""
