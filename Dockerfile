# vaultbundle operator image. Two stages: the builder makes the wheel and a venv with only the runtime
# dependencies; the final stage gets that venv and nothing else (no compilers, no pip, no apt).
#
# Base choice: the same Debian slim Python image in both stages, pinned to an exact version tag, so the venv's
# interpreter path (/usr/local/bin/python3.11) and ABI are identical. A distroless python3-debian12 base would
# bring Debian's own Python 3.11.2 at another path and would have to match the builder by hand. Debian's apt
# and dpkg cannot be uninstalled from a Debian base, so the final stage deletes their binaries instead (the
# dpkg database in /var/lib/dpkg stays, so image scanners still see the OS packages). Pin a digest as well
# (`--build-arg BASE_IMAGE=python:3.11.17-slim-bookworm@sha256:…`) where you can resolve one for your registry
# mirror.
#
# BASE_IMAGE: both stages use it. The default is the pinned Docker Hub image; `make image` passes a local Debian
# bookworm base with Debian's python3.11 (e2e/build/build-base-image.sh) because no registry is reachable on the
# test bed. The final stage removes the package managers of either base (pip under site-packages or
# dist-packages, ensurepip, apt/dpkg).
ARG BASE_IMAGE=python:3.11.17-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/operator.lock requirements/
COPY operator/ operator/

# The wheel, then a venv without pip holding exactly the locked runtime closure (every store's SDK included),
# each file checked against its sha256 in requirements/operator.lock, and the wheel itself without dependency
# resolution. All dependencies ship binary wheels: no compiler is needed.
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv --without-pip /opt/venv \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --require-hashes --no-deps \
      -r requirements/operator.lock \
 && python -m pip --python /opt/venv/bin/python install --no-cache-dir --no-deps /wheels/vaultbundle-*.whl \
 && python -m pip --python /opt/venv/bin/python check \
 && /opt/venv/bin/vaultbundle --version \
 && /opt/venv/bin/python -c "import github, nacl, google.cloud.secretmanager, azure.keyvault.secrets, azure.identity, hvac" \
 && ! ls /opt/venv/lib/python3.11/site-packages | grep -E '^(pip|setuptools|wheel)([-_.]|$)'


FROM ${BASE_IMAGE}

ARG BASE_IMAGE
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="vaultbundle" \
      org.opencontainers.image.description="Kubernetes operator: keeps Secrets equal to the latest verified vsync bundle in S3" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"

# A named non-root user for the numeric UID/GID the chart runs as; then remove every package manager:
# pip/setuptools/wheel of the base Python (and ensurepip's bundled wheels), and apt/dpkg's binaries.
RUN groupadd --system --gid 65532 nonroot \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin nonroot \
 && rm -rf /usr/local/bin/pip* /usr/local/bin/idle* \
           /usr/local/lib/python3.11/site-packages/pip* \
           /usr/local/lib/python3.11/site-packages/setuptools* \
           /usr/local/lib/python3.11/site-packages/_distutils_hack \
           /usr/local/lib/python3.11/site-packages/distutils-precedence.pth \
           /usr/local/lib/python3.11/site-packages/wheel* \
           /usr/local/lib/python3.11/ensurepip \
           /usr/bin/pip* /usr/lib/python3/dist-packages/pip* /usr/lib/python3/dist-packages/setuptools* \
           /usr/lib/python3/dist-packages/_distutils_hack /usr/lib/python3/dist-packages/distutils-precedence.pth \
           /usr/lib/python3/dist-packages/wheel* /usr/lib/python3.11/ensurepip /usr/share/python-wheels \
           /usr/bin/apt* /usr/bin/dpkg* /usr/sbin/dpkg* /usr/lib/apt /usr/lib/dpkg /etc/apt \
           /var/lib/apt /var/cache/apt /var/cache/debconf/*

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    TMPDIR=/tmp

# No secrets are baked in: the digest key, the kube credentials and the bundles' Secrets come at run time.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/opt/venv/bin/vaultbundle", "run"]
CMD ["--all-namespaces"]
