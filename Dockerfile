# syntax=docker/dockerfile:1.7
# ledgerstream: one image for the signer, the verifiers, the dashboard and the CLI.
#   stage 1 builds liboqs (ML-DSA-65 only) from a pinned, checksummed release tarball,
#   stage 2 builds the wheels, stage 3 is the slim runtime (non-root, no compilers).
# The fast ML-DSA backend (liboqs through ctypes, ledgerstream.core.mldsa) is then used
# instead of pyca's: about 8x faster signing. See docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS liboqs
ARG LIBOQS_VERSION=0.14.0
ARG LIBOQS_SHA256=5b0df6138763b3fc4e385d58dbb2ee7c7c508a64a413d76a917529e3a9a207ea
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
RUN curl -fsSL -o liboqs.tar.gz "https://github.com/open-quantum-safe/liboqs/archive/refs/tags/${LIBOQS_VERSION}.tar.gz" \
 && echo "${LIBOQS_SHA256}  liboqs.tar.gz" | sha256sum -c - \
 && tar -xzf liboqs.tar.gz \
 && cmake -GNinja -S "liboqs-${LIBOQS_VERSION}" -B out \
      -DCMAKE_BUILD_TYPE=Release \
      -DBUILD_SHARED_LIBS=ON \
      -DOQS_BUILD_ONLY_LIB=ON \
      -DOQS_USE_OPENSSL=OFF \
      -DOQS_DIST_BUILD=ON \
      -DOQS_MINIMAL_BUILD="SIG_ml_dsa_65" \
      -DCMAKE_INSTALL_PREFIX=/opt/oqs \
      -DCMAKE_INSTALL_LIBDIR=lib \
 && cmake --build out \
 && cmake --install out
# the signer's sign_many shim (one ctypes call signs a chunk with no GIL held), beside liboqs
COPY scripts/install_liboqs.sh /build/install_liboqs.sh
RUN OQS_INSTALL_PATH=/opt/oqs bash /build/install_liboqs.sh --shim-only

FROM ${PYTHON_IMAGE} AS wheels
# a C compiler for the verifier's compiled entry reader (setup.py; the runtime stays compiler-free)
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md* ./
COPY ledgerstream ./ledgerstream
COPY producers ./producers
COPY signer_worker ./signer_worker
COPY verifier_worker ./verifier_worker
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels ".[signer,verifier,tools]"

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 ledgerstream \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin ledgerstream \
 && mkdir -p /data /keys /trust /tsa /etc/ledgerstream \
 && chown ledgerstream:ledgerstream /data /keys /trust /tsa \
 && chmod 0700 /keys
COPY --from=liboqs /opt/oqs /opt/oqs
COPY --from=wheels /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "ledgerstream[signer,verifier,tools]" \
 && rm -rf /wheels
COPY docker/ /opt/ledgerstream/docker/
ENV OQS_INSTALL_PATH=/opt/oqs \
    LEDGERSTREAM_MLDSA_BACKEND=liboqs \
    LEDGERSTREAM_HOME=/data \
    PYTHONUNBUFFERED=1
# fail the build, not the first signature, if the fast backend does not load
RUN python -c "from ledgerstream.core import avro_fast, mldsa; assert mldsa.default_backend() == 'liboqs', mldsa.available_backends(); assert avro_fast.compiled()"
USER 10001:10001
WORKDIR /data
CMD ["ledgerstream", "--help"]
