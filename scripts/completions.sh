#!/usr/bin/env bash
# Regenerates the shell completion scripts in completions/ from the CLI itself.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p completions
go run ./cmd/kongfb completion bash > completions/kongfb.bash
go run ./cmd/kongfb completion zsh > completions/_kongfb
go run ./cmd/kongfb completion fish > completions/kongfb.fish
echo "completions written to completions/" >&2
