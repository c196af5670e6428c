# SPDX-License-Identifier: MIT
"""nmi-workbench's orchestration: small modules, each with a thin command line.

Run them from the repository root (make does) as `python3 -m scripts.<module>`:

  qemu            boot the hypervisor in QEMU (KVM + nested VMX or TCG); qemu/run.py
  bochs           boot it in Bochs 2.7 (bochsrc, the term display's pty, SIGHUP stop)
  bochs_trace     trace one region instruction by instruction in Bochs (make trace)
  iso             a GRUB rescue ISO (multiboot2, optional guest module)
  elfsym          nm symbols and the Bochs symbol file (the one list of linker markers)
  fuzz            libFuzzer on one variant; minimize, replay with a timeline
  replay_hv       a scenario or fuzz input replayed on the hypervisor (make replay ON=...),
                  every case against the simulator; replay_scenario (its compact form,
                  the REPLAY lines) and replay_trace (TRACE=1) are its parts
  coverage        the NMI coverage map of a corpus as one HTML page (make coverage)
  bench           the project's figures (make bench)
  check_identity  the core's machine code is the same in every binary
  seed_experiment the racy-counter core against an NMI flood (make bench-hv)
  mkseeds         the fuzzer's seed corpus, encoded with the decoder's own table

Library modules: qmp (QMP client), books (the hypervisor's per-CPU books),
report (PASS/FAIL/SKIP lines and the closing count).  Python 3 standard library only.
"""
