#!/usr/bin/env bash
# Linked as docker, kind, kubectl, helm, linkerd, grpcurl and df into a folder
# of its own by test/deploy/scripts.test.ts, which sets STANDIN_MJS to
# stand-in.mjs (that does the work) and puts the folder first on PATH.
exec node "${STANDIN_MJS:?STANDIN_MJS must name stand-in.mjs}" "$(basename "$0")" "$@"
