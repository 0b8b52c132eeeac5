"""Which scenario runs when Locust loads several scenario files at once (`locust -f scenarios`).

A scenario is one file: the user classes defined in it, and its load shape if it has one (a staged scenario). Left
to itself, Locust runs every user class it loaded unless some are named on its command line, and the first shape
it found whatever the users (`merge_locustfiles_content` in locust/main.py). So once the files are loaded (`init`),
the process that conducts the run (a master or a local runner) chooses instead:

- the user classes named on the command line (`locust -f scenarios StepLimitUser`), or `ChatUser` (steady chat)
  when none is;
- the shape of the file they come from, when they all come from one staged scenario; otherwise none, and -u, -r
  and -t set the load;
- never the user classes of two staged scenarios together: each needs its own shape, and one run has one.

Locust reads `environment.user_classes` and `environment.shape_class` when a test starts, not before: headless
right after `init`, in the web UI at its Start button, on a master when it tells its workers what to spawn. With
`--class-picker` the web UI's form sets both at Start, so `check` runs again as each test starts. A worker spawns
whichever classes its master names, so it keeps every class it loaded, and runs no shape of its own. A single file
is left as Locust loads it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from locust import LoadTestShape, User
from locust.env import Environment
from locust.runners import WorkerRunner

log = logging.getLogger("scenarios")
DEFAULT_USER = "ChatUser"


def scenario_of(cls: type) -> str:
    """The file a class was defined in: Locust imports each locustfile as a module named after the file."""
    return f"{cls.__module__}.py"


def several_loaded(environment: Environment) -> bool:
    return len(environment.parsed_locustfiles or []) > 1


def choose(environment: Environment) -> None:
    """At `init`: the users and the shape of the run (ValueError when they cannot go together)."""
    if not several_loaded(environment):
        return
    if isinstance(environment.runner, WorkerRunner):
        environment.shape_class = None  # the master runs the shape; Locust's pick here is just the first file's
        return
    available = environment.available_user_classes or {}
    if not getattr(environment.parsed_options, "user_classes", None):
        if DEFAULT_USER not in available:
            raise ValueError(
                f"no user class is named and the default, {DEFAULT_USER}, is not loaded: "
                f"name one of {', '.join(sorted(available))}"
            )
        environment.user_classes = [available[DEFAULT_USER]]  # type: ignore[list-item]  # Locust says instances
    picked = environment.shape_class
    shape = shape_for(environment.user_classes, _shapes(environment))
    environment.shape_class = shape
    if shape is not None:
        shape.runner = environment.runner  # Locust gave the runner only to the shape it had picked
    _describe(environment.user_classes, shape, _shapes(environment))
    if shape is None and picked is not None and not picked.use_common_options and _common_options(environment):
        # Locust warned, before `init`, that its first shape would ignore them.
        log.info(
            "-u, -r and -t are not ignored: %s, which Locust's warning is about, does not run", type(picked).__name__
        )


def check(environment: Environment) -> None:
    """As a test starts: the users and the shape chosen (in the web UI's class picker) go together, or ValueError."""
    if not several_loaded(environment):
        return
    users = environment.user_classes
    expected = shape_for(users, _shapes(environment))
    shape = environment.shape_class
    if shape is None or shape is expected:
        return
    home = scenario_of(type(shape))
    others = [u for u in users if scenario_of(u) != home]
    raise ValueError(
        f"{type(shape).__name__} is the load shape of {home}, not of {_named(others)}: "
        f"choose the user classes of {home} alone, or the Default shape"
    )


def shape_for(users: Sequence[type[User]], shapes: Iterable[LoadTestShape]) -> LoadTestShape | None:
    """The shape of the users' scenario if they are all of one staged scenario; ValueError if they are of two."""
    staged = {scenario_of(type(shape)): shape for shape in shapes}
    scenarios = {scenario_of(u) for u in users}
    with_shape = sorted(scenarios & staged.keys())
    if len(with_shape) > 1:
        mixed = [u for u in users if scenario_of(u) in with_shape]
        raise ValueError(
            f"{_named(mixed)} are of different staged scenarios, each with a load shape of its own, and a run has "
            "one shape: choose the user classes of one scenario"
        )
    return staged[with_shape[0]] if with_shape and len(scenarios) == 1 else None


def _shapes(environment: Environment) -> list[LoadTestShape]:
    if environment.available_shape_classes:
        return list(environment.available_shape_classes.values())
    return [environment.shape_class] if environment.shape_class is not None else []


def _common_options(environment: Environment) -> bool:
    options = environment.parsed_options
    return any(getattr(options, name, None) for name in ("num_users", "spawn_rate", "run_time"))


def _named(users: Iterable[type[User]]) -> str:
    """`A (a.py)`, `A (a.py) and B (b.py)`, `A (a.py), B (b.py) and C (c.py)`."""
    names = sorted(f"{u.__name__} ({scenario_of(u)})" for u in users)
    return " and ".join([", ".join(names[:-1]), names[-1]]) if len(names) > 1 else "".join(names)


def _describe(users: Sequence[type[User]], shape: LoadTestShape | None, shapes: Iterable[LoadTestShape]) -> None:
    if shape is not None:
        log.info("scenario: %s, load shape %s", _named(users), type(shape).__name__)
        return
    log.info("scenario: %s, no load shape: -u, -r and -t set the load", _named(users))
    # Named beside users of other files, a staged scenario's users run without its shape: worth saying.
    unused = {scenario_of(type(s)): type(s).__name__ for s in shapes}
    for home in sorted({scenario_of(u) for u in users} & unused.keys()):
        others = _named(u for u in users if scenario_of(u) != home)
        log.warning("%s does not run: it shapes the users of %s alone, not %s", unused[home], home, others)
