# The listwatch command in an image, built from this repository (listwatch is not on PyPI):
#
#     docker build -t listwatch:dev .
#     docker run --rm listwatch:dev --version
#
# The README's "Running as a Deployment" runs it. Two stages: the first installs listwatch
# with the cli extra (and its dependencies, as wheels) into a virtualenv; the second copies
# only that virtualenv onto a clean base and runs as an unprivileged user.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/listwatch
WORKDIR /src
# What the package is built from; .dockerignore keeps everything else out of the context.
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
RUN /opt/listwatch/bin/python -m pip install '/src[cli]'

FROM ${PYTHON_IMAGE}
ENV PATH=/opt/listwatch/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 listwatch \
    && useradd --system --uid 10001 --gid listwatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin listwatch
COPY --from=build /opt/listwatch /opt/listwatch
# Numeric, so that Kubernetes' runAsNonRoot can check it without reading /etc/passwd.
USER 10001:10001
ENTRYPOINT ["listwatch"]
CMD ["--help"]
