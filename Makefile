# Two entry points: `make run` (the main job) and `make test` (everything CI checks).
# Each installs what it needs: Debian packages when missing, Python packages into .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck pytest check bench system-packages clean install deb

run: $(STAMP)
	$(BIN)/autoscaler demo

test: lint typecheck check pytest

lint: $(STAMP)
	$(BIN)/ruff check autoscaler tests bench pkg
	$(BIN)/ruff format --check autoscaler tests bench pkg
	$(BIN)/lint-imports --no-logo

typecheck: $(STAMP)
	$(BIN)/mypy --strict

check: $(STAMP)
	$(BIN)/autoscaler check policies/

pytest: $(STAMP)
	AUTOSCALER_REQUIRE_INTEGRATION=1 $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/decide.py

system-packages:
	scripts/install-system-packages.sh

$(STAMP): pyproject.toml scripts/install-system-packages.sh
	scripts/install-system-packages.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Installing like a service: `make install` (prefix=/usr/local by default; DESTDIR stages it) and
# `make deb` (prefix=/usr, a Debian 12 package in dist/; set DEB_MAINTAINER, and DEB_COMPRESSION to
# xz, zstd or none). Neither starts or restarts the service.
prefix ?= /usr/local
exec_prefix ?= $(prefix)
bindir ?= $(exec_prefix)/bin
libdir ?= $(exec_prefix)/lib
datadir ?= $(prefix)/share
mandir ?= $(datadir)/man
docdir ?= $(datadir)/doc/autoscaler
sysconfdir ?= /etc
# systemd reads units, sysusers.d and tmpfiles.d under /usr/lib, /usr/local/lib and /etc only:
# with another prefix (/opt/autoscaler), set unitdir=/etc/systemd/system and the like.
unitdir ?= $(libdir)/systemd/system
sysusersdir ?= $(libdir)/sysusers.d
tmpfilesdir ?= $(libdir)/tmpfiles.d
bashcompletiondir ?= $(datadir)/bash-completion/completions
zshcompletiondir ?= $(datadir)/zsh/vendor-completions
venvdir ?= $(libdir)/autoscaler
# the interpreter the installed virtualenv links to, by its versioned name (python3.11 on Debian 12)
INSTALL_PYTHON ?= /usr/bin/$(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])')
BUILD ?= build/pkg
DEB_OUT ?= dist
# the man pages' date, and byte code that does not change with the build time
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || date +%s)

install: $(STAMP)
	DESTDIR="$(DESTDIR)" prefix="$(prefix)" bindir="$(bindir)" libdir="$(libdir)" datadir="$(datadir)" \
	mandir="$(mandir)" docdir="$(docdir)" sysconfdir="$(sysconfdir)" unitdir="$(unitdir)" \
	sysusersdir="$(sysusersdir)" tmpfilesdir="$(tmpfilesdir)" bashcompletiondir="$(bashcompletiondir)" \
	zshcompletiondir="$(zshcompletiondir)" venvdir="$(venvdir)" PYTHON="$(INSTALL_PYTHON)" \
	PIP="$(BIN)/pip" DOCS_PYTHON="$(BIN)/python" WHEELHOUSE="$(BUILD)/wheelhouse" BUILD="$(BUILD)" \
	SOURCE_DATE_EPOCH="$(SOURCE_DATE_EPOCH)" pkg/install.sh

deb: $(STAMP)
	BUILD="$(BUILD)" OUT="$(DEB_OUT)" MAKE="$(MAKE)" pkg/build-deb.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build dist
