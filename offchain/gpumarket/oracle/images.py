"""Who pays when a job's image cannot be had: the oracle's own checks of the image, and the verdict.

    policy = ImagePolicy({"ghcr.io": "https://ghcr.io"}, ImageConfig(min_checks=2))
    watch = ImageWatch()                                  # one per followed job
    policy.observe(watch, status, now, health)            # every fresh status of the job's agent
    # -> None while there is nothing to decide; an ImageVerdict once the agent reports the job
    #    lost for an image reason (failed: FAILED, provider slashed; else no decision: expiry)

A container job's agent gets the image after the spec arrives and before the job starts; a
failure there ends the job ``lost`` with ``reason`` ``image_not_found``, ``image_unavailable`` or
``image_too_large``, never started. The client chose the image, the provider advertised where it
pulls from and how large an image it takes (``max_image_bytes`` in its ``GET /health``), so
either may be at fault. This oracle looks for itself, through the OCI distribution API on the
registries it is configured with (gpumarket.containers.registry):

- while the agent reports ``"pulling": true`` for the job, one check of the status's ``image``
  at most every ``check_interval_s`` (and at most ``max_checks`` of them);
- once more when the agent reports the image failure;
- and, while every check so far found the image but fewer than ``min_checks`` were made (an
  agent that reported the failure at once, before this oracle saw it pulling), one more on
  each later poll, ``check_interval_s`` apart, until there are enough: an instant claim gets
  the same scrutiny as a long pull. Then the verdict is final: later polls of the same lost
  job check nothing more.

The verdict (:func:`verdict`) is FAILED only when this oracle made at least ``min_checks``
checks over the agent's attempt, every one FOUND, and the image's size (config + layers; the
largest linux platform of an index) is within the ``max_image_bytes`` the provider advertised
(the largest it advertised during the attempt, as read here: a provider cannot lower it to
escape). This holds for ``image_too_large`` too: the agent sizes an image before pulling it by
the same measure, with the same client (gpumarket.containers.registry), so an image within the
limit by this oracle's checks was within it for the agent, and the claim is false. Anything
else is no decision: the oracle could not fetch it every time (so the fault
may be the registry's or the oracle's own network), the image is on a registry it does not
know, it names no registry, or it lives only on the provider (``localhost/...``), the provider
advertises no limit, or the image is over it. Then the job ends by ``expire_job``: the client is
refunded in full and the provider is not slashed.

An image failure claimed for a job that had already started (its status has a ``started_at``,
or this oracle saw it running or finished) is no image failure: images are got before the
start. Such a job is left to the job loop's rule for lost jobs (FAILED).

FAILED reports are canonical already (zero hashes, 0 gpu_seconds), so honest oracles that
reach the verdict sign byte-identical reports; the verdict's text is for the logs only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from gpumarket.agentapi.errors import ProviderRefused, ProviderUnreachable
from gpumarket.containers.reference import parse_image_reference
from gpumarket.containers.registry import ImageCheck, ImageStatus, RegistryClient

__all__ = [
    "EXPIRY",
    "IMAGE_REASONS",
    "ImageConfig",
    "ImagePolicy",
    "ImageVerdict",
    "ImageWatch",
    "RecordedCheck",
    "advertised_limit",
    "verdict",
]

log = logging.getLogger(__name__)

IMAGE_REASONS: Final = frozenset({"image_not_found", "image_unavailable", "image_too_large"})
EXPIRY: Final = "the job ends by expiry: client refunded, provider not slashed"


@dataclass(frozen=True)
class ImageConfig:
    """How this oracle checks a job's image (see the module docstring)."""

    min_checks: int = 2  # FOUND checks over the attempt needed for a FAILED verdict
    check_interval_s: float = 2.0  # at most one check this often while the agent pulls
    max_checks: int = 32  # checks kept per job while it pulls (then no more are made)

    def __post_init__(self) -> None:
        if self.min_checks < 1:
            raise ValueError("ImageConfig.min_checks must be >= 1")
        if self.check_interval_s < 0:
            raise ValueError("ImageConfig.check_interval_s must be >= 0")
        if self.max_checks < self.min_checks:
            raise ValueError("ImageConfig.max_checks must be >= min_checks")


@dataclass(frozen=True)
class RecordedCheck:
    """One check this oracle made: when (its clock), what it found."""

    at: float
    status: ImageStatus
    size_bytes: int | None
    detail: str

    @classmethod
    def of(cls, at: float, check: ImageCheck) -> RecordedCheck:
        return cls(at, check.status, check.size_bytes, check.detail)


@dataclass(frozen=True)
class ImageVerdict:
    """``failed``: decide FAILED; otherwise no decision (the job ends by expiry)."""

    failed: bool
    detail: str


@dataclass
class ImageWatch:
    """One followed job's image, as this oracle saw it (in memory, like challenge history)."""

    image: str | None = None
    checks: list[RecordedCheck] = field(default_factory=list)
    last_check: float = float("-inf")
    limits: list[int] = field(default_factory=list)  # max_image_bytes values the provider advertised
    health_answered: bool = False  # its /health answered at least once (with or without a limit)
    health_detail: str = ""
    started: bool = False  # the job was seen started: no image failure can follow
    final_checked: bool = False  # the check made when the agent reported the failure
    concluded: ImageVerdict | None = None

    @property
    def max_image_bytes(self) -> int | None:
        return max(self.limits) if self.limits else None


def advertised_limit(health: Mapping[str, Any]) -> int | None:
    """The ``max_image_bytes`` of an agent's /health answer (None: none, or not a count)."""
    value = health.get("max_image_bytes")
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def _size(value: int) -> str:
    return f"{value} bytes ({value / 2**20:.1f} MiB)"


def verdict(
    image: str | None,
    reason: str,
    checks: Sequence[RecordedCheck],
    max_image_bytes: int | None,
    config: ImageConfig = ImageConfig(),
) -> ImageVerdict:
    """FAILED when this oracle fetched the image at least ``min_checks`` times, every check it
    made found it, and its size is within ``max_image_bytes``; no decision otherwise."""
    shown = image or "(no image named)"

    def no_decision(why: str) -> ImageVerdict:
        return ImageVerdict(False, f"the agent reports {reason} for {shown}; {why}: {EXPIRY}")

    if not image:
        return no_decision("the status names no image this oracle could check")
    if not checks:
        return no_decision("this oracle made no check of it")
    missed = [c for c in checks if c.status is not ImageStatus.FOUND]
    if missed:
        first = missed[0]
        return no_decision(
            f"{len(missed)} of this oracle's {len(checks)} check(s) did not find it"
            f" ({first.status.value}: {first.detail})"
        )
    if len(checks) < config.min_checks:
        return no_decision(
            f"this oracle fetched its manifest only {len(checks)} time(s) over the attempt "
            f"(at least {config.min_checks} needed)"
        )
    sizes = [c.size_bytes for c in checks]
    if any(s is None for s in sizes):
        return no_decision("a check found it without a size")
    size = max(s for s in sizes if s is not None)
    if max_image_bytes is None:
        return no_decision(f"its size is {_size(size)}, but the provider advertises no max_image_bytes")
    if size > max_image_bytes:
        return no_decision(f"its size {_size(size)} is over the advertised max_image_bytes {max_image_bytes}")
    return ImageVerdict(
        True,
        (
            f"the agent reports {reason} for {shown}, but this oracle fetched its manifest {len(checks)} times over "
            f"the attempt, size {_size(size)} within the advertised max_image_bytes {max_image_bytes}"
        ),
    )


class ImagePolicy:
    """Makes the checks and gives the verdict; one per job loop (see the module docstring)."""

    def __init__(
        self,
        registries: RegistryClient | Mapping[str, str] | None = None,
        config: ImageConfig = ImageConfig(),
    ) -> None:
        if isinstance(registries, RegistryClient):
            self.client = registries
        else:
            self.client = RegistryClient(registries or {})
        self.config = config

    def check(self, image: str) -> ImageCheck:
        """One check of ``image`` (the agent's text): UNCHECKABLE when it is no pinned reference."""
        try:
            reference = parse_image_reference(image)
        except ValueError as error:
            return ImageCheck(ImageStatus.UNCHECKABLE, detail=f"{image[:300]!r} is not a pinned reference: {error}")
        return self.client.check(reference)

    def _record(self, watch: ImageWatch, image: str, now: float) -> None:
        result = self.check(image)
        watch.last_check = now
        watch.checks.append(RecordedCheck.of(now, result))
        log.info("image %r: %s (check %d): %s", image[:300], result.status.value, len(watch.checks), result.detail)

    def _read_health(self, watch: ImageWatch, health: Callable[[], Mapping[str, Any]]) -> None:
        try:
            document = health()
        except (ProviderUnreachable, ProviderRefused) as error:
            watch.health_detail = f"its /health did not answer ({type(error).__name__}: {error})"
            return
        watch.health_answered = True
        limit = advertised_limit(document)
        if limit is not None:
            watch.limits.append(limit)

    def observe(
        self,
        watch: ImageWatch,
        status: Mapping[str, Any],
        now: float,
        health: Callable[[], Mapping[str, Any]],
    ) -> ImageVerdict | None:
        """Take one fresh status of the job: check while it pulls; the verdict once it is lost for
        an image reason (then the same verdict every time); None otherwise."""
        if watch.concluded is not None:
            return watch.concluded
        state = status.get("state")
        if state in ("running", "finished") or status.get("started_at") is not None:
            watch.started = True
        image = status.get("image")
        image = image if isinstance(image, str) and image else None
        if image is not None and image != watch.image:
            if watch.image is not None:
                log.warning(
                    "the agent now names image %r instead of %r: earlier checks dropped", image[:300], watch.image[:300]
                )
            watch.image, watch.checks, watch.last_check = image, [], float("-inf")
        if watch.started:
            return None
        if state == "lost" and status.get("reason") in IMAGE_REASONS:
            return self._conclude(watch, str(status.get("reason")), now, health)
        if status.get("pulling") is True and image is not None:
            if not watch.checks:  # the limit the provider advertises as the attempt begins
                self._read_health(watch, health)
            if len(watch.checks) < self.config.max_checks and now - watch.last_check >= self.config.check_interval_s:
                self._record(watch, image, now)
        return None

    def _owes_checks(self, watch: ImageWatch) -> bool:
        """Every check so far found the image, and too few were made for a verdict."""
        return len(watch.checks) < self.config.min_checks and all(
            check.status is ImageStatus.FOUND for check in watch.checks
        )

    def _conclude(
        self,
        watch: ImageWatch,
        reason: str,
        now: float,
        health: Callable[[], Mapping[str, Any]],
    ) -> ImageVerdict:
        if watch.image is not None and not watch.final_checked:
            self._record(watch, watch.image, now)  # once, when the failure is reported
            watch.final_checked = True
        elif (
            watch.image is not None
            and self._owes_checks(watch)
            and now - watch.last_check >= self.config.check_interval_s
        ):
            self._record(watch, watch.image, now)
        self._read_health(watch, health)
        if not watch.health_answered:
            return ImageVerdict(
                False,
                (
                    f"the agent reports {reason} for {watch.image}, but {watch.health_detail}: "
                    "asking again on the next poll"
                ),
            )
        if watch.image is not None and self._owes_checks(watch):
            return ImageVerdict(
                False,
                (
                    f"the agent reports {reason} for {watch.image}; this oracle found it {len(watch.checks)} time(s) "
                    f"so far and checks again ({self.config.min_checks} checks needed for a verdict)"
                ),
            )
        result = verdict(watch.image, reason, watch.checks, watch.max_image_bytes, self.config)
        watch.concluded = result
        return result
