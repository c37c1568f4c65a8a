// Runs a benchmark server (nginx, Bun) so that it cannot outlive the bench: sets
// PR_SET_PDEATHSIG to SIGKILL, then execs the command. The pid stays the same, so the bench
// reads the server's own CPU time from /proc/<pid>/stat. The bench's exit handler kills its
// children too; this covers the bench itself being killed with SIGKILL, which runs no handler.
//
//   die_with_parent <expected-parent-pid> <command> [args...]
#include "common.h"

#include <signal.h>
#include <sys/prctl.h>

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: die_with_parent <expected-parent-pid> <command> [args...]\n");
    return 2;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl");
  // The parent may have died between fork and prctl, when no signal was armed yet (prctl(2)).
  if (getppid() != (pid_t)strtol(argv[1], NULL, 10)) return 1;
  execvp(argv[2], argv + 2);
  die(argv[2]);
}
