# safekit - the two commands of the README, and the steps behind them.
# Everything here runs as root on a fresh Debian 12 machine: it installs its own apt packages and .venv.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# what builds the native replication programs (native/), the only replication engine (docs/adr/0029, 0033):
# the engine's wheel carries them and the playbooks build that wheel on this machine (setup.py runs
# `make -C native`), so `make demo`, `make demo-farm`, `make molecule` and the tests install them first
NATIVE_BUILD_PACKAGES := build-essential pkg-config libfuse3-dev libssl-dev
APT_PACKAGES := iproute2 openssh-server openssh-client nftables iputils-ping util-linux procps python3-venv nginx fuse3 $(NATIVE_BUILD_PACKAGES) postgresql postgresql-client python3-apt
LAB ?= demo
# only the tests need these (the console's browser test: Debian's Chromium, never a downloaded browser;
# the module library's MariaDB and Apache templates, shellcheck of its scripts; systemd-analyze verify of
# the unit and debootstrap for the lab hosts that boot systemd as their PID 1: tests/integration/systemd;
# the kvm_vm template's libvirt and QEMU, and the kernel, busybox and cpio its test builds a tiny guest from;
# prometheus for promtool, which checks the shipped alerting rules: tests/unit/observability)
TEST_APT_PACKAGES := chromium mariadb-server mariadb-client apache2 shellcheck systemd debootstrap libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 busybox-static linux-image-cloud-amd64 cpio prometheus
# the native replication data path (native/): its C library, unit tests, sanitizer build and fuzzers
NATIVE_APT_PACKAGES := $(NATIVE_BUILD_PACKAGES) clang-14 libclang-rt-14-dev

.PHONY: demo demo-farm test lint unit integration molecule bench deps venv clean lab-down

## demo: a mirror cluster on lab hosts, deployed by the playbook; the primary loses power, the secondary takes over
demo: deps venv
	$(BIN)/python examples/demo.py $(LAB)

## demo-farm: a farm of three lab nodes running nginx behind one virtual IP; a node loses power, its share moves
demo-farm: deps venv
	$(BIN)/python examples/demo_farm.py farmdemo

## test: lint, type check, unit tests, integration tests and Molecule scenarios on real lab hosts
## (within its 45-minute budget: the Ansible runs that repeat a deployment the suite already makes -
## `safekit deploy`'s wrapper, the arbiter role alone, the mirror playbook's and the inventory
## example's second runs, the check modes (the farm playbook's run here) - run in test-ansible-long;
## one lab runs the installed collection's deployment, then the inventory example's:
## test_deploy_mirror_playbook.py)
## The unit, fuzz and native tests run beside the integration tests at nice 19 (scripts/test_suites.sh).
test: deps test-deps venv checkov-venv lint native-test
	scripts/test_suites.sh $(BIN) --durations=25 $(foreach t,$(ANSIBLE_LONG_TESTS) $(CONSOLE_RELOAD_TEST) $(TEMPLATE_PLAYBOOK_TEST) $(DEB_POSTGRESQL_TEST),--ignore=$(t)) \
		$(foreach t,$(ANSIBLE_LONG_SINGLE) $(DEB_DEPLOY_LONG) $(VIP_IPV6_LONG),--deselect=$(t))
	$(MAKE) --no-print-directory molecule-mirror

ANSIBLE_LONG_TESTS := tests/integration/ansible/test_safekit_deploy.py \
	tests/integration/arbiter/test_arbiter_role.py \
	tests/integration/ansible/test_firewall_lab.py
# test_firewall_lab: safekit_manage_firewall on locked-down lab hosts (a deployment and a second run)
# make test keeps one deployment per playbook and one second run (the farm's in its file;
# safekit.ha.deploy_mirror's in Molecule's mirror scenario); the rest of those files runs in make
# test-ansible-long (make test went over 45 minutes: 40 min of pytest, then Molecule)
ANSIBLE_LONG_SINGLE := \
	tests/integration/ansible/test_deploy_mirror_playbook.py::test_a_second_run_changes_nothing \
	tests/integration/ansible/test_deploy_mirror_playbook.py::test_check_mode_on_a_changed_input_reports_and_changes_nothing \
	tests/integration/ansible/test_deploy_mirror_playbook.py::test_the_inventory_example_run_again_changes_nothing \
	tests/integration/ansible/test_deploy_farm_playbook.py::test_check_mode_on_a_changed_input_reports_and_changes_nothing \
	tests/integration/ansible/test_deploy_farm_playbook.py::test_input_the_engine_refuses_changes_no_node \
	tests/integration/ansible/test_deploy_farm_playbook.py::test_the_cloud_role_installs_the_sdk_and_writes_the_provider \
	tests/integration/ansible/test_ops_playbooks.py::test_rolling_upgrade_keeps_the_vip_serving_then_changes_nothing
# make test-deb-deploy: the second run of the playbook deployed from the Debian package, the rolling
# upgrade to a newer package, and remove.yml
VIP_IPV6_LONG := tests/integration/vip/test_vip_ipv6_lab.py::test_a_swap_moves_the_client_by_neighbour_advertisement \
	tests/integration/vip/test_vip_ipv6_lab.py::test_the_secondary_takes_the_vip_when_the_primary_is_powered_off
DEB_DEPLOY_LONG := tests/integration/deb/test_deploy_mirror_from_deb.py::test_a_second_run_changes_nothing \
	tests/integration/deb/test_deploy_mirror_from_deb.py::test_rolling_upgrade_to_a_newer_package_keeps_the_vip_serving \
	tests/integration/deb/test_deploy_mirror_from_deb.py::test_the_arbiter_role_installs_the_package_on_a_debian_witness \
	tests/integration/deb/test_deploy_mirror_from_deb.py::test_remove_takes_the_package_away

## test-ansible-long: the deployments make test leaves out (about 15 minutes on lab hosts):
## `safekit deploy mirror` (progress, summary, check mode, an unreachable node), the arbiter role on
## its own, the mirror and farm playbooks' and the ops playbooks' files whole (a check-mode test
## needs the deployment the file's first test makes; the mirror playbook's second run from the
## installed collection; the farm's cloud role; the wheelhouse rolling upgrade)
.PHONY: test-ansible-long
test-ansible-long: deps test-deps venv
	$(BIN)/pytest --durations=0 $(ANSIBLE_LONG_TESTS) $(sort $(foreach t,$(ANSIBLE_LONG_SINGLE),$(firstword $(subst ::, ,$(t)))))

## test-template-playbook: modules of the template library deployed by their example playbooks
## on fresh labs: playbooks/examples/mirror.yml (safekit_module_template mirror and its
## safekit_template_* values; the template's application serves a replicated page through the
## VIP; run twice, the second changes nothing; 191 s then 143 s at load 12) and
## playbooks/examples/kvm_vm.yml (a tiny guest under QEMU's TCG, running on the primary only,
## answering through the VIP; 159 s then 106 s at load 11); then postgresql.yml, mariadb.yml,
## nginx_farm.yml, apache_farm.yml and farm.yml, each on its own lab (mppg, mpdb, mpngx, mpapa,
## mpfarm) with the application's load tool running through the VIP while the serving node loses
## power (lab kill): pgbench and a MariaDB commit loop find every acknowledged commit on the new
## primary, wrk is unanswered only between the cut and the survivor serving it (each 4 to 5
## minutes at load 12, deployment included: 238 to 286 s measured)
.PHONY: test-template-playbook
TEMPLATE_PLAYBOOK_TEST := tests/integration/ansible/test_template_playbook.py \
	tests/integration/ansible/test_kvm_vm_playbook.py
test-template-playbook: deps test-deps venv
	@$(MAKE) --no-print-directory deps APT_PACKAGES="wrk"
	$(BIN)/pytest --durations=0 $(TEMPLATE_PLAYBOOK_TEST)

## test-collection-deploy: the collection as users install it (ADR 0041), alone: ansible-galaxy
## collection build, install of the tarball into an empty path, then a playbook of FQCNs only
## (safekit.ha.deploy_mirror) deploys the demo mirror module to a fresh lab (lab itans; 2 to 6
## minutes). make test runs it as the first test of test_deploy_mirror_playbook.py, whose lab the
## inventory example then re-deploys with structured replication; it also checks the installed
## copy's playbooks, roles and modules (tests/unit/ansible/test_ansible_collection_package.py, 30 s).
.PHONY: test-collection-deploy
COLLECTION_DEPLOY_TEST := tests/integration/ansible/test_deploy_mirror_playbook.py::test_a_playbook_of_fqcns_deploys_the_demo_module_from_the_installed_collection
test-collection-deploy: deps test-deps venv
	$(BIN)/pytest --durations=0 $(COLLECTION_DEPLOY_TEST)

## lint: ruff, mypy, one version everywhere (scripts/set_version.py), ansible-lint's production
## profile on the playbooks, roles and the collection, antsibull-changelog lint, and make sanity
## (ansible-test sanity; 20 s once its virtualenvs are cached, about a minute the first time)
lint: venv
	$(BIN)/ruff check src tests bench examples collections packaging scripts
	$(BIN)/ruff format --check src tests bench examples collections packaging scripts
	$(BIN)/mypy
	$(BIN)/python scripts/set_version.py
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/ansible-lint playbooks $(COLLECTION)
	cd $(COLLECTION) && $(abspath $(BIN))/antsibull-changelog lint
	$(ansible_test_sanity)

COLLECTION := collections/ansible_collections/safekit/ha

## sanity: ansible-test sanity on the collection, every test, on Python 3.11 without containers
## (--local); each test's requirements come from the package index into virtualenvs ansible-test
## caches; its pip bootstrap script, which it would download from ansible's CI file server, is
## scripts/ansible_test_get_pip.py (ignores: $(COLLECTION)/tests/sanity/ignore-2.N.txt)
.PHONY: sanity
sanity: venv
	$(ansible_test_sanity)

define ansible_test_sanity
@$(BIN)/python scripts/ansible_test_get_pip.py --install-into-cache >/dev/null
cd $(COLLECTION) && PATH="$(abspath $(BIN)):$$PATH" $(abspath $(BIN))/ansible-test sanity \
	--python 3.11 --local --color no
endef

## version: print the project's version (pyproject.toml; fails if galaxy.yml disagrees), or set it
## in every place with VERSION=X.Y.Z (docs/release.md, docs/adr/0032)
.PHONY: version
version:
	@$(PYTHON) scripts/set_version.py $(VERSION)

unit: venv checkov-venv
	$(BIN)/pytest tests/unit

## checkov-venv: checkov (the Terraform security scan of tests/unit/terraform) in its own
## virtualenv, .venv-checkov, so that its pinned libraries never meet the engine's; idempotent
.PHONY: checkov-venv
checkov-venv: .venv-checkov/.installed

.venv-checkov/.installed: scripts/checkov-venv.sh
	PYTHON=$(PYTHON) bash scripts/checkov-venv.sh

integration: deps test-deps venv
	$(BIN)/pytest tests/integration

## molecule: the Molecule scenarios (create/destroy through safekit lab); molecule.yml points
## Ansible at the checkout's collections/ (the roles and playbooks of safekit.ha), and installs
## nothing
## (make test runs the mirror scenario; the farm playbook's deployment and second run are in its
## tests/integration/ansible file)
.PHONY: molecule-mirror
molecule: molecule-mirror
	cd molecule/.. && PATH="$(abspath $(BIN)):$$PATH" $(BIN)/molecule test -s farm

molecule-mirror: deps venv
	cd molecule/.. && PATH="$(abspath $(BIN)):$$PATH" $(BIN)/molecule test -s mirror

## chaos: the fault-injection suite, 100 rounds from a recorded seed (docs/chaos.md); bench/results/chaos.json
.PHONY: chaos soak fuzz
chaos: deps venv
	$(BIN)/python bench/chaos.py --rounds 100 $(if $(SEED),--seed $(SEED))

## soak: 30 minutes of writes with a swap every minute; memory and open files must stay flat (not in CI)
soak: deps venv
	$(BIN)/python bench/soak.py --minutes $(or $(MINUTES),30)

## fuzz: the fuzz targets of tests/fuzz with 30 times the examples of `make test` (docs/fuzzing.md)
fuzz: venv native-deps
	SAFEKIT_FUZZ=long $(BIN)/pytest tests/fuzz
	$(MAKE) -C native fuzz FUZZ_SECONDS=300

## native-test: the native programs built (the tests run them: tests/integration/rfs), the native
## code's unit tests, the same under ASan+UBSan, and a short libFuzzer run of each decoder (zero
## crashes); `make fuzz` runs the fuzzers 5 minutes each
.PHONY: native-test native-deps
native-test: native-deps
	$(MAKE) -C native all test asan-test
	$(MAKE) -C native fuzz FUZZ_SECONDS=10

native-deps:
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(NATIVE_APT_PACKAGES)"

## native-sanitize-test: tests/native (the replication programs as processes: a primary and a
## secondary over TCP, FUSE mounts, resynchronisation, verify, the front) on their AddressSanitizer +
## UndefinedBehaviorSanitizer builds; any sanitizer report fails the test after which it appeared
## (tests/native/conftest.py). make test runs it beside the integration tests (scripts/test_suites.sh)
.PHONY: native-sanitize-test
NATIVE_SANITIZE_ENV := SAFEKIT_NATIVE_SANITIZE=1 SAFEKIT_SECONDARY_SANITIZE=1 SAFEKIT_FRONT_SANITIZE=1
native-sanitize-test: venv native-deps
	$(NATIVE_SANITIZE_ENV) $(BIN)/pytest tests/native -m "not wallclock" -p no:cacheprovider

## test-rfs: the replication integration tests alone (tests/integration/rfs), on the native programs
## of this checkout (the only data path: docs/adr/0029); test-rfs-native is its former name
.PHONY: test-rfs test-rfs-native
test-rfs: deps test-deps venv native-deps
	$(MAKE) -C native all
	$(BIN)/pytest --durations=0 tests/integration/rfs

test-rfs-native: test-rfs

## test-powercut: 20 power cuts of the primary (lab kill) under a writer of fsync'd, fdatasync'd,
## O_DSYNC and renamed-into-place records, native engine with the writeback cache on (ADR 0030);
## `make test` runs 2 rounds. SAFEKIT_POWERCUT_WRITEBACK=off runs it without the cache.
.PHONY: test-powercut
test-powercut: deps test-deps venv native-deps
	$(MAKE) -C native all
	SAFEKIT_POWERCUT_ROUNDS=20 $(BIN)/pytest -s --durations=0 tests/integration/rfs/test_rfs_powercut_writeback.py


bench: deps venv
	@$(MAKE) --no-print-directory deps APT_PACKAGES="keepalived wrk"
	$(BIN)/python bench/lab.py
	$(BIN)/python bench/failover.py
	$(BIN)/python bench/deploy.py
	$(BIN)/python bench/farm.py
	$(BIN)/python bench/modules.py

## test-farm-directed: the long vmac_directed lab test (three kill/return rounds, more connections,
## about a minute here) and the long IPv6 farm lab test (both modes, a death in each); `make test`
## runs their short versions
.PHONY: test-farm-directed
test-farm-directed: deps test-deps venv
	SAFEKIT_FARM_LONG=1 $(BIN)/pytest tests/integration/farm/test_farm_directed_lab.py \
		tests/integration/farm/test_farm_ipv6_lab.py

## test-vip-ipv6: a mirror module's IPv6 VIP on lab hosts whole (start, swap, power cut and rejoin,
## a dead daemon's VIP; about a minute); `make test` runs its short version (VIP_IPV6_LONG deselected)
.PHONY: test-vip-ipv6
test-vip-ipv6: deps test-deps venv
	$(BIN)/pytest tests/integration/vip/test_vip_ipv6_lab.py

## test-console-reload: cluster.xml changed through the API and taken live by the running daemons
## (its own lab console1, about a minute: SAFEKIT_CONSOLE_RELOAD=1; make test leaves it out)
CONSOLE_RELOAD_TEST := tests/integration/api/test_console_cluster_reload.py
.PHONY: test-console-reload
test-console-reload: deps test-deps venv
	SAFEKIT_CONSOLE_RELOAD=1 $(BIN)/pytest $(CONSOLE_RELOAD_TEST)

## bench-modules: PostgreSQL on a mirror module against a local one (pgbench TPC-B, 4 clients, 60 s,
## same run; the module on the native data path) with the replication
## processes' CPU, RSS and files and the WAL's sync time, and a power cut under load seen by the
## client; bench/results/modules.json (about 5 minutes; QUICK=1: 15 s runs)
.PHONY: bench-modules
bench-modules: deps test-deps venv native-deps
	$(MAKE) -C native all
	$(BIN)/python bench/modules.py $(if $(QUICK),--quick)

## bench-module-outage: every template of `safekit module templates` on its own lab (bench/module_outage.py):
## 5 power cuts of the serving node per module, the client-visible outage (p50, max) and start_prim ->
## answer, into bench/results/modules.json's outage_after_power_cut (QUICK=1: 2 runs; ONLY=T,T: those
## templates; cloud_lb_farm is skipped with its reason)
.PHONY: bench-module-outage
bench-module-outage: deps test-deps venv native-deps
	$(MAKE) -C native all
	$(BIN)/python bench/module_outage.py $(if $(QUICK),--quick) $(if $(ONLY),--only $(ONLY))

## bench-deploy-deb: playbooks/deploy-mirror.yml from the Debian package on a Debian 12 and a Debian 13
## lab pair booting systemd (tests/integration/deb's deploy and rerun, lab name benchdeb): first run,
## rerun (changed=0), package size, apt-get install time -> bench/results/deploy_deb.json and deploy.json (about 15 minutes)
.PHONY: bench-deploy-deb
bench-deploy-deb: deps test-deps venv
	@$(MAKE) --no-print-directory deps APT_PACKAGES="debootstrap"
	$(BIN)/python bench/deploy_deb.py

## deb: the self-contained Debian package of the engine, build/deb/safekit_VERSION_ARCH.deb, built in a
## Debian root of DEB_SUITE (bookworm: Debian 12, default; trixie: Debian 13) with its own Python;
## cached by its inputs (seconds when nothing changed). docs/install.md, packaging/build_deb.py
.PHONY: deb deb-test
DEB_SUITE ?= bookworm
deb:
	@$(MAKE) --no-print-directory deps APT_PACKAGES="debootstrap"
	$(PYTHON) packaging/build_deb.py --suite $(DEB_SUITE)

## deb-test: the package rebuilt from its cached dependencies (--force), lintian, and the install,
## run and removal tests on a clean Debian 12 lab host (the short version runs in `make test`)
deb-test: deps test-deps venv
	@$(MAKE) --no-print-directory deps APT_PACKAGES="debootstrap lintian"
	$(PYTHON) packaging/build_deb.py --suite $(DEB_SUITE) --force
	lintian --fail-on error,warning build/deb/safekit_*+deb$(if $(filter trixie,$(DEB_SUITE)),13,12)_*.deb
	SAFEKIT_DEB_SUITE=$(DEB_SUITE) $(BIN)/pytest tests/unit/packaging tests/integration/packaging

## test-deb-deploy: playbooks/deploy-mirror.yml from the Debian package (the roles' default source)
## onto two Debian 12 lab hosts booting systemd (DEB_SUITE=trixie: Debian 13), over ssh, with a
## replicated directory: VIP, swap, a second run changes nothing, a rolling upgrade (upgrade.yml) to
## a newer package with the VIP serving, remove.yml removes the package
## (about 6 minutes; lab name h44deb; `make test` runs only the first part on Debian 12, about a
## minute). tests/integration/deb
.PHONY: test-deb-deploy
test-deb-deploy: deps test-deps venv
	SAFEKIT_DEB_SUITE=$(DEB_SUITE) $(BIN)/pytest --durations=0 tests/integration/deb --ignore=$(DEB_POSTGRESQL_TEST)

## test-deb-postgresql: playbooks/examples/postgresql.yml from the Debian package (the template
## "postgresql") onto two Debian 12 lab hosts booting systemd with Debian's PostgreSQL 15
## (DEB_SUITE=trixie: Debian 13 and PostgreSQL 17), no version named by the playbook: the node's
## postmaster, a row through the VIP kept across a swap, a second run changes nothing (lab name
## h17pg; a few minutes, more the first time: the root with postgresql is made by debootstrap once)
.PHONY: test-deb-postgresql
DEB_POSTGRESQL_TEST := tests/integration/deb/test_postgresql_from_deb.py
test-deb-postgresql: deps test-deps venv
	SAFEKIT_DEB_SUITE=$(DEB_SUITE) $(BIN)/pytest --durations=0 $(DEB_POSTGRESQL_TEST)

## test-deps: the Debian packages only the tests need, kept out of `make demo`
.PHONY: test-deps
test-deps:
	@$(MAKE) --no-print-directory deps APT_PACKAGES="$(TEST_APT_PACKAGES)"

## deps: the Debian packages the lab and the tests need (installed only when missing)
deps:
	@if [ "$$(id -u)" != 0 ]; then echo "make: run as root (the lab builds network namespaces)"; exit 1; fi
	@missing=""; for p in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip>=24"
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

lab-down: venv
	$(BIN)/safekit lab down --name $(LAB)

clean:
	rm -rf $(VENV) .venv-checkov build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
