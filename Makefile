# tidemark - continuous backup and point-in-time restore for SQLite/libSQL.
#   make            build ./tidemark
#   make check      the unit tests under ASan + UBSan, each test in its own
#                   process with a timeout (the fast tier: under a minute)
#   make test       install missing dependencies, build, run every test
#   make demo       install, build, show replicate + restore end to end
#   make bench      benchmarks (figures side by side with baselines)
#   make SANITIZE=1 build with AddressSanitizer + UBSan (also for test)
#   make install    install under PREFIX (/usr/local), DESTDIR honoured
#   make deb        the Debian 12 package (debian/) into build/deb/

CC      ?= cc
PKGS    := sqlite3 libsodium libzstd yaml-0.1 libcurl libcrypto
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wno-format-truncation \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  += $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lev

ifeq ($(FUZZ),1)
CC      := clang
CFLAGS  += -fsanitize=address,undefined,fuzzer-no-link -fno-omit-frame-pointer -O1 -Wno-unknown-warning-option
LDFLAGS += -fsanitize=address,undefined
BUILD   := build/fuzz
else ifeq ($(SANITIZE),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -O1
LDFLAGS += -fsanitize=address,undefined
BUILD   := build/sanitize
else
BUILD   := build/release
endif

# Every .c file of a folder is part of the library (main.c is the binary's).
COMMON_SRC  := $(sort $(wildcard common/*.c common/storage/*.c))
REPL_SRC    := $(sort $(wildcard replicator/*.c))
RESTORE_SRC := $(sort $(wildcard restore/*.c))
LIB_SRC     := $(COMMON_SRC) $(REPL_SRC) $(RESTORE_SRC)
LIB_OBJ     := $(LIB_SRC:%.c=$(BUILD)/%.o)

FUZZ_TARGETS := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS    := $(FUZZ_TARGETS:%=build/fuzz/%)
UNIT_TESTS  := $(patsubst tests/unit/%.c,%,$(wildcard tests/unit/test_*.c))
UNIT_BINS   := $(UNIT_TESTS:%=$(BUILD)/tests/%)
# The other .c files of tests/unit (the harness, shared checks) form a
# library every unit test binary links.
UNIT_SUPPORT_OBJ := $(patsubst %.c,$(BUILD)/%.o,$(filter-out tests/unit/test_%,$(wildcard tests/unit/*.c)))
UNIT_OBJ    := $(UNIT_TESTS:%=$(BUILD)/tests/unit/%.o) $(UNIT_SUPPORT_OBJ)

.PHONY: all deps check test unit unit-tests demo bench nightly-rpo clean tidemark fuzz fuzz-targets torture valgrind \
        install deb
all: tidemark

tidemark: $(BUILD)/tidemark
	cp $< $@

$(BUILD)/tidemark: $(BUILD)/main.o $(BUILD)/libtidemark.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/libtidemark.a: $(LIB_OBJ)
	rm -f $@ && ar rcs $@ $^

# -MMD: the compiler writes which headers each object includes (.d files),
# so a header change rebuilds just the objects that use it.
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(LIB_OBJ:.o=.d) $(BUILD)/main.d $(UNIT_OBJ:.o=.d)

# A unit test binary: its object with the test support library and
# tidemark's (objects compiled by the rule above, so with dependency files).
$(BUILD)/tests/unit/libsupport.a: $(UNIT_SUPPORT_OBJ)
	rm -f $@ && ar rcs $@ $^

$(UNIT_BINS): $(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/libsupport.a $(BUILD)/libtidemark.a
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The fault-injection shim the fault tests preload (tests/faults/faultfs.c);
# built without sanitizers, as it runs inside any build of tidemark.
$(BUILD)/faultfs.so: tests/faults/faultfs.c
	@mkdir -p $(dir $@)
	$(CC) -shared -fPIC -O2 -g -Wall -Wextra -Werror -o $@ $< -ldl -lpthread

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libtidemark.a
	clang $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< build/fuzz/libtidemark.a $(LDLIBS)

fuzz-targets: $(FUZZ_BINS)

# Longer fuzzing runs: make fuzz FUZZ_SECONDS=600 (default 60 per target).
fuzz: deps
	$(MAKE) FUZZ=1 fuzz-targets
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} tests/fuzz/run

# Crash-consistency torture: TORTURE_SECONDS (default 300), TORTURE_SEED.
torture: deps
	$(MAKE) tidemark
	@/usr/bin/python3 tests/integration/torture.py
	@CORRUPTION_CASES=$${CORRUPTION_CASES:-1000} /usr/bin/python3 tests/integration/test_lifecycle.py test_verify_reports_every_damage

# The unit tests under valgrind (memcheck, leaks); a test's timeout is
# longer there.
valgrind: unit
	@for t in $(UNIT_BINS); do HARNESS_TIMEOUT=$${HARNESS_TIMEOUT:-120} valgrind --error-exitcode=9 --leak-check=full -q $$t || exit 1; done

deps:
	@scripts/install-deps

unit: tidemark $(UNIT_BINS) $(BUILD)/faultfs.so

unit-tests: $(UNIT_BINS)

# The fast tier: the unit tests only, built with AddressSanitizer + UBSan;
# the harness runs each test in a process of its own with a timeout.
check:
	$(MAKE) SANITIZE=1 unit-tests
	@BUILD=build/sanitize tests/run --unit-only

# The unit tests also run under AddressSanitizer + UBSan in every `make
# test` (a second build in build/sanitize); SANITIZE=1 runs everything so.
test: deps
ifeq ($(SANITIZE),1)
	$(MAKE) unit
	@BUILD=$(BUILD) tests/run
else
	$(MAKE) SANITIZE=1 unit-tests
	$(MAKE) FUZZ=1 fuzz-targets
	$(MAKE) unit
	@BUILD=$(BUILD) SANITIZED_UNIT_BUILD=build/sanitize FUZZ_SECONDS=5 tests/run
endif

demo: deps
	$(MAKE) tidemark
	@scripts/demo

bench:
	@EXTRA_PACKAGES="zstd gnuplot-nox time" BENCH_PEERS=1 scripts/install-deps
	$(MAKE) tidemark
	@bench/run

# The nightly job: p99 RPO and RTO against thresholds (bench/nightly-rpo --help).
nightly-rpo: deps
	$(MAKE) tidemark
	@bench/nightly-rpo

# make install [PREFIX=/usr/local] [DESTDIR=...]: the binary, the manual
# pages, the example configuration as SYSCONFDIR/tidemark/tidemark.yml
# (never over an existing one: that is yours), the sidecar's systemd unit
# with its paths rewritten to this PREFIX and SYSCONFDIR, and the
# Prometheus rules and Grafana dashboard in share/tidemark. The nightly
# RPO units stay in config/: they run bench/ from a checkout.
PREFIX        ?= /usr/local
BINDIR        ?= $(PREFIX)/bin
MANDIR        ?= $(PREFIX)/share/man
DATADIR       ?= $(PREFIX)/share/tidemark
SYSCONFDIR    ?= /etc
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
MAN_PAGES     := $(wildcard docs/man/*.1 docs/man/*.5)
SYSTEMD_UNITS := $(filter-out config/tidemark-nightly-rpo.%,$(wildcard config/*.service config/*.timer))
SHARED_FILES  := $(wildcard config/prometheus-rules.yml config/grafana-dashboard.json)

install: tidemark
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/tidemark $(DESTDIR)$(SYSTEMDUNITDIR) $(DESTDIR)$(DATADIR)
	install -m 0755 tidemark $(DESTDIR)$(BINDIR)/tidemark
	@for page in $(MAN_PAGES); do \
	    section=$${page##*.}; \
	    echo "install -m 0644 $$page $(DESTDIR)$(MANDIR)/man$$section/"; \
	    install -d $(DESTDIR)$(MANDIR)/man$$section && \
	    install -m 0644 $$page $(DESTDIR)$(MANDIR)/man$$section/ || exit 1; \
	done
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/tidemark/tidemark.yml ]; then \
	    echo "kept $(DESTDIR)$(SYSCONFDIR)/tidemark/tidemark.yml (the example is config/tidemark.example.yml)"; \
	else \
	    echo "install -m 0644 config/tidemark.example.yml $(DESTDIR)$(SYSCONFDIR)/tidemark/tidemark.yml"; \
	    install -m 0644 config/tidemark.example.yml $(DESTDIR)$(SYSCONFDIR)/tidemark/tidemark.yml; \
	fi
	@for unit in $(SYSTEMD_UNITS); do \
	    echo "install -m 0644 $$unit $(DESTDIR)$(SYSTEMDUNITDIR)/"; \
	    sed -e 's|/usr/local/bin/tidemark|$(BINDIR)/tidemark|g' -e 's|/etc/tidemark|$(SYSCONFDIR)/tidemark|g' \
	        $$unit > $(DESTDIR)$(SYSTEMDUNITDIR)/$${unit##*/} && chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$${unit##*/} || exit 1; \
	done
	$(if $(SHARED_FILES),install -m 0644 $(SHARED_FILES) $(DESTDIR)$(DATADIR)/)

# make deb: dpkg-buildpackage (debhelper, debian/) on a copy of this tree
# in build/deb/tidemark-VERSION (its products land in build/deb/, not in
# the parent directory of the checkout), the version from the project's
# (common/cmd_version.c). -> build/deb/tidemark_VERSION_ARCH.deb
VERSION := $(shell sed -n 's/^\#define TIDEMARK_VERSION "\(.*\)"/\1/p' common/cmd_version.c)
DEB_SRC := build/deb/tidemark-$(VERSION)

deb:
	@test -n "$(VERSION)" || { echo "error: no TIDEMARK_VERSION in common/cmd_version.c" >&2; exit 1; }
	rm -rf build/deb && mkdir -p $(DEB_SRC)
	tar -cf - --exclude=./build --exclude=./tidemark --exclude=node_modules --exclude=./.git \
	    --exclude=./demo --exclude=./tests/tmp . | tar -xf - -C $(DEB_SRC)
	sed -i '1s/^tidemark ([^)]*)/tidemark ($(VERSION))/' $(DEB_SRC)/debian/changelog
	cd $(DEB_SRC) && dpkg-buildpackage -b -us -uc
	@ls build/deb/*.deb

clean:
	rm -rf build tidemark
