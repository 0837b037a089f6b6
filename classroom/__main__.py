"""``python -m classroom make|grade``: the nbgrader assignment of the exercises chapter.

    python -m classroom make  [--course assignments] [--chapter notebooks/07_exercises.md]
    python -m classroom grade SUBMISSIONS/ [--course assignments] [--timeout SECONDS]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classroom import ClassroomError
from classroom.chapter import STEM


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m classroom", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    mk = sub.add_parser("make", help="write the nbgrader course folder and generate the student copy")
    mk.add_argument("--chapter", default=f"notebooks/{STEM}.md", help="the chapter source")
    mk.add_argument("--timeout", type=int, default=120, help="seconds per cell when grading (nbgrader's Execute.timeout)")
    gr = sub.add_parser("grade", help="autograde FOLDER/<student>.ipynb and export grades_07_exercises.csv")
    gr.add_argument("folder", help="folder of submitted notebooks, one <student>.ipynb each")
    gr.add_argument("--timeout", type=int, default=None, help="seconds per cell (default: the course's setting)")
    for p in (mk, gr):
        p.add_argument("--course", default="assignments", help="the nbgrader course folder (default: assignments)")
    args = parser.parse_args(argv)
    from classroom import course

    try:
        if args.command == "make":
            paths = course.make(args.course, args.chapter, args.timeout)
            print(f"student copy: {paths['student']}\nteacher's notebook (solutions, model answers, tests): {paths['source']}")
            print(f"grade submissions: python -m classroom grade SUBMISSIONS/ --course {args.course}")
        else:
            csv = course.grade(args.course, args.folder, args.timeout)
            print(course.report(args.course))
            print(f"grades: {csv}; feedback for each student: {Path(args.course) / 'feedback'}/")
    except ClassroomError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
