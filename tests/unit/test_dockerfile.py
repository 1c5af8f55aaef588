"""The Dockerfile, checked statically (no Docker engine here): stages, pins, user, final-stage contents, entrypoint."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from fnmatch import fnmatch

import pytest

import vaultbundle
from tests.conftest import REPO

DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse(text: str) -> list[Stage]:
    """Instructions (keyword, arguments) per stage; comments dropped, `\\` continuations joined."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a line continuation"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM (only ARG may come first)"
        else:
            stages[-1].instructions.append((keyword, args))
    return stages


def global_args(text: str) -> dict[str, str]:
    """The ARGs declared before the first FROM (usable in FROM lines), with their defaults."""
    defaults: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if line.upper().startswith("FROM "):
            break
        if line.upper().startswith("ARG "):
            name, _, default = line[4:].strip().partition("=")
            defaults[name] = default
    return defaults


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return parse(DOCKERFILE.read_text())


def test_multi_stage(stages: list[Stage]) -> None:
    assert len(stages) >= 2
    builder, final = stages[0], stages[-1]
    assert builder.name == "builder"
    copies = final.all("COPY")
    assert any("--from=builder" in args and "/opt/venv" in args for args in copies)


# exact tag: repository:<major>.<minor>.<patch>[-variant] (no floating "3.11" or "3" or latest), or a digest
PINNED = re.compile(r"^[\w./-]+(:\d+\.\d+\.\d+[\w.-]*)?(@sha256:[0-9a-f]{64})?$")


def test_every_base_is_pinned(stages: list[Stage]) -> None:
    """Every FROM is a pinned image, or the one global ARG BASE_IMAGE whose default is a pinned image."""
    defaults = global_args(DOCKERFILE.read_text())
    for stage in stages:
        image = stage.image
        if "$" in image:
            assert image == "${BASE_IMAGE}", f"{image}: only the BASE_IMAGE build-arg may choose a base"
            image = defaults.get("BASE_IMAGE", "")
            assert image, "ARG BASE_IMAGE has no default before the first FROM"
        assert PINNED.fullmatch(image) and (":" in image.split("/")[-1] or "@sha256:" in image), (
            f"{image}: pin an exact version tag or a digest"
        )
        assert not image.split("@")[0].endswith(":latest")
    # both stages use the same base, so the venv's interpreter path and ABI match
    assert len({stage.image for stage in stages}) == 1


def test_base_image_build_arg_defaults_to_the_pinned_python_image(stages: list[Stage]) -> None:
    """`make image` swaps in a local base; the default (real registries) stays python:3.11.17-slim-bookworm."""
    assert global_args(DOCKERFILE.read_text()) == {"BASE_IMAGE": "python:3.11.17-slim-bookworm"}
    assert [stage.image for stage in stages] == ["${BASE_IMAGE}"] * len(stages)
    final = stages[-1]
    assert "BASE_IMAGE" in final.all("ARG"), "the final stage must re-declare ARG BASE_IMAGE to label it"
    assert 'org.opencontainers.image.base.name="${BASE_IMAGE}"' in " ".join(final.all("LABEL"))


def test_builder_installs_the_hashed_lock_then_the_wheel(stages: list[Stage]) -> None:
    """Dependencies come only from requirements/operator.lock, hash-checked; the wheel adds nothing to resolve."""
    run = " ".join(stages[0].all("RUN"))
    assert "pip wheel --no-deps" in run
    assert "venv --without-pip /opt/venv" in run
    steps = [step.strip() for step in run.split("&&")]
    lock = next(i for i, s in enumerate(steps) if "-r requirements/operator.lock" in s)
    assert "--require-hashes" in steps[lock] and "--no-deps" in steps[lock], steps[lock]
    wheel = next(i for i, s in enumerate(steps) if re.search(r"install [^&]*/wheels/vaultbundle-\*\.whl$", s))
    assert wheel > lock and "--no-deps" in steps[wheel], "install the wheel after the lock, without resolving"
    assert any(s.endswith("pip --python /opt/venv/bin/python check") for s in steps[wheel:]), "pip check the venv"
    assert "requirements/operator.lock requirements/" in stages[0].all("COPY")


def test_final_stage_user_is_numeric_non_root(stages: list[Stage]) -> None:
    users = stages[-1].all("USER")
    assert users, "the final stage sets no USER"
    user = users[-1]
    assert re.fullmatch(r"\d+(:\d+)?", user), f"USER {user}: use a numeric uid[:gid]"
    assert all(int(part) != 0 for part in user.split(":"))
    assert user == "65532:65532"  # what the chart's securityContext runs as


COMPILERS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|cc|rustc|cargo|[\w.-]*-dev)\b")
INSTALLS = re.compile(r"\b(apt-get|apt|aptitude|dpkg|apk|yum|dnf|microdnf)\s+(-\S+\s+)*(install|add|-i)\b")


def test_final_stage_has_no_compilers_or_package_installs(stages: list[Stage]) -> None:
    final = stages[-1]
    for args in final.all("RUN"):
        assert not INSTALLS.search(args), f"package-manager install in the final stage: {args}"
        assert not re.search(r"\bpip3?(\.\d+)?\s+install\b|-m pip\b", args), f"pip in the final stage: {args}"
        assert not COMPILERS.search(args), f"compiler in the final stage: {args}"
    removed = " ".join(final.all("RUN"))
    # the base's package managers are deleted (apt/dpkg binaries, pip/setuptools, ensurepip's wheels)
    for path in ("/usr/bin/apt*", "/usr/bin/dpkg*", "site-packages/pip*", "site-packages/setuptools*", "ensurepip"):
        assert path in removed, f"the final stage does not remove {path}"
    # and those of a Debian-python base (BASE_IMAGE with python3-pip, e.g. make image's local base)
    for path in ("/usr/bin/pip*", "dist-packages/pip*", "dist-packages/setuptools*", "/usr/lib/python3.11/ensurepip"):
        assert path in removed, f"the final stage does not remove {path}"
    assert not final.all("ADD"), "ADD can fetch remote content; use COPY"


def test_entrypoint_runs_the_operator(stages: list[Stage]) -> None:
    entrypoints = stages[-1].all("ENTRYPOINT")
    assert entrypoints, "no ENTRYPOINT"
    command = json.loads(entrypoints[-1])  # exec form
    assert command in (["vaultbundle", "run"], ["/opt/venv/bin/vaultbundle", "run"])


def test_no_secrets_baked_in(stages: list[Stage]) -> None:
    for stage in stages:
        for keyword, args in stage.instructions:
            if keyword in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"(?i)(secret|passphrase|password|token|aws_access|private)[\w]*=", args), args
            if keyword == "COPY":
                sources = shlex.split(args)[:-1]
                assert not any(re.search(r"(?i)\.testbed|kubeconfig|\.env\b|\.pem|\.key|digest", s) for s in sources), (
                    args
                )


def test_labels_and_version(stages: list[Stage]) -> None:
    final = stages[-1]
    labels = " ".join(final.all("LABEL"))
    for name in ("title", "description", "version", "licenses"):
        assert f"org.opencontainers.image.{name}=" in labels
    args = dict(arg.split("=", 1) for arg in final.all("ARG") if "=" in arg)
    assert args.get("VERSION") == vaultbundle.__version__, "Dockerfile ARG VERSION != vaultbundle.__version__"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch(path, bare) or path.startswith(bare + "/") or fnmatch(path, bare.replace("**/", "*/")):
                result = not negate
        return result

    for needed in ("pyproject.toml", "README.md", "requirements/operator.lock", "operator/vaultbundle/cli.py"):
        assert not ignored(needed), f"{needed} is needed by the build but ignored"
    for kept_out in (".venv/bin/python", ".git/config", ".testbed/kubeconfig", "tests/conftest.py", "charts/x"):
        assert ignored(kept_out), f"{kept_out} would be sent to the build context"
