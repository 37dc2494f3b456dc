# syntax=docker/dockerfile:1.7
# ledgerstream: one image for the signer, the verifiers, the dashboard and the CLI.
#   stage 1 builds liboqs (ML-DSA only) with scripts/install_liboqs.sh (patched, vector-checked),
#   stage 2 builds the wheels, stage 3 is the slim runtime (non-root, no compilers).
# The fast ML-DSA backend (liboqs through ctypes, ledgerstream.core.mldsa) is then used
# instead of pyca's: about 8x faster signing. See docs/deploy.md.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS liboqs
# The same build as a source checkout (scripts/install_liboqs.sh): liboqs 0.13.0 from the
# checksummed crates.io source, patched (ML-DSA-65 AVX2 verifier, docs/decisions.md D24),
# installed only if it passes the vendored Wycheproof vectors, plus the sign_many shim.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake ninja-build cargo patch ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY scripts/install_liboqs.sh scripts/check_liboqs_vectors.py scripts/sign_many_shim.c scripts/liboqs-*.patch ./scripts/
COPY tests/vectors/wycheproof/mldsa_65_verify_test.json ./tests/vectors/wycheproof/
RUN OQS_INSTALL_PATH=/opt/oqs PYTHON=python bash scripts/install_liboqs.sh

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
