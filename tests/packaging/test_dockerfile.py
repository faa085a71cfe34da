"""The Dockerfile the README's "Running as a Deployment" section builds, checked as text.

Building the image needs a Docker daemon and the base image from a registry; where both are
at hand, ``docker build -t listwatch:dev . && docker run --rm listwatch:dev --version``
(the README's command) is the check. These tests hold everywhere: the image is built from
this repository rather than from a package index by name, runs as an unprivileged user,
and runs ``listwatch``; and what it copies is in the build context.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    assert not pending, "a continuation line ends the file"
    parsed = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        parsed.append(Instruction(keyword.upper(), arguments.strip()))
    return parsed


def parse() -> tuple[dict[str, str], list[Stage]]:
    """``ARG`` defaults before the first ``FROM``, and the stages."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for instruction in instructions((REPO / "Dockerfile").read_text()):
        if instruction.keyword == "FROM":
            base, *rest = instruction.arguments.split()
            name = rest[1] if len(rest) == 2 and rest[0].upper() == "AS" else None
            assert not rest or name, f"cannot read FROM {instruction.arguments}"
            stages.append(Stage(base, name, []))
        elif not stages:
            assert instruction.keyword == "ARG", "only ARG may come before the first FROM"
            key, _, default = instruction.arguments.partition("=")
            args[key] = default
        else:
            stages[-1].instructions.append(instruction)
    return args, stages


def base_image(args: dict[str, str], stage: Stage) -> str:
    return re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], stage.base)


def test_two_stages_on_a_slim_python_the_package_supports() -> None:
    args, stages = parse()
    assert [stage.name for stage in stages] == ["build", None]
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for stage in stages:
        image = base_image(args, stage)
        found = re.fullmatch(r"python:(3\.\d+)-slim", image)
        assert found, image
        classifier = f"Programming Language :: Python :: {found.group(1)}"
        assert classifier in project["classifiers"]


def test_listwatch_is_installed_from_the_repository_with_the_cli_extra() -> None:
    """Every ``pip install`` names a path inside the image, never a package to look up by
    name (listwatch is not on PyPI; a same-named package there would be someone else's)."""
    _, stages = parse()
    build, final = stages
    installs = [run for run in build.all("RUN") if "pip install" in run]
    assert len(installs) == 1
    words = shlex.split(installs[0].split("pip install", 1)[1])
    targets = [word for word in words if not word.startswith("-")]
    assert targets == ["/src[cli]"]
    copied = [shlex.split(arguments) for arguments in build.all("COPY")]
    assert ["src", "./src"] in copied
    assert not any("pip install" in run for run in final.all("RUN"))
    assert final.all("COPY") == ["--from=build /opt/listwatch /opt/listwatch"]


def test_the_image_runs_listwatch_as_an_unprivileged_user() -> None:
    _, stages = parse()
    final = stages[-1]
    users = final.all("USER")
    assert users, "the final stage must set USER"
    user, _, group = users[-1].partition(":")
    assert user.isdigit(), f"USER {users[-1]}: a numeric uid lets runAsNonRoot check it"
    assert int(user) != 0
    assert group == "" or group.isdigit(), users[-1]
    assert group != "0", users[-1]
    keywords = [instruction.keyword for instruction in final.instructions]
    assert "RUN" not in keywords[keywords.index("USER") :], "nothing runs as root after USER"
    assert [json.loads(entry) for entry in final.all("ENTRYPOINT")] == [["listwatch"]]


def test_what_it_copies_is_in_the_build_context() -> None:
    """The build stage's COPY sources exist and .dockerignore lets them through."""
    rules = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]

    def included(path: str) -> bool:
        keep = True
        for rule in rules:
            negated = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negated
        return keep

    _, stages = parse()
    for arguments in stages[0].all("COPY"):
        *sources, _ = shlex.split(arguments)
        for source in sources:
            assert (REPO / source).exists(), source
            assert included(source), f"{source} is excluded by .dockerignore"
    assert not included(".git")


def test_the_readme_deployment_builds_and_uses_this_image() -> None:
    readme = (REPO / "README.md").read_text()
    start = readme.index("\n## Running as a Deployment")
    deployment = readme[start : readme.index("\n## ", start + 1)]
    assert "docker build -t listwatch:dev ." in deployment
    assert re.findall(r"^\s*image: (\S+)", deployment, re.M) == ["listwatch:dev"]
    assert "docker build -t listwatch:dev ." in (REPO / "Dockerfile").read_text()
