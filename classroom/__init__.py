"""Classroom material for the exercises chapter, on nbgrader.

``python -m classroom make`` turns ``notebooks/07_exercises.md`` (the one source: the book renders
its solutions in dropdowns) into an nbgrader course folder and runs ``nbgrader generate_assignment``;
``python -m classroom grade FOLDER`` autogrades a folder of submitted notebooks with ``nbgrader
autograde`` and exports the grades as CSV. ``checks.py`` holds the exercise checks that the
autograder's test cells run. See book/teachers.md.
"""


class ClassroomError(ValueError):
    """A problem the teacher can fix (bad chapter markup, bad submissions); one sentence."""
