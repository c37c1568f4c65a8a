// Helpers shared by the benchmark's C programs. Each program prints one JSON object per line on
// stdout (the bench parses them) and dies on any unexpected error, so a broken run never passes
// as a fast one.
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static inline uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void die(const char *what) {
  fprintf(stderr, "%s: %s\n", what, strerror(errno));
  exit(1);
}

// Every program gets a hard deadline: a hung peer must end the run, not the machine's patience.
static inline void set_deadline(const char *seconds) {
  unsigned limit = (unsigned)strtoul(seconds, NULL, 10);
  alarm(limit > 0 ? limit : 60);
}

// 1000 connections plus their files need more than the usual soft limit of 1024 descriptors.
static inline void raise_nofile(void) {
  struct rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// CPU time of the whole process (all threads), in microseconds, split like process.cpuUsage().
static inline void cpu_usage(uint64_t *user_us, uint64_t *sys_us) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  *user_us = (uint64_t)usage.ru_utime.tv_sec * 1000000u + (uint64_t)usage.ru_utime.tv_usec;
  *sys_us = (uint64_t)usage.ru_stime.tv_sec * 1000000u + (uint64_t)usage.ru_stime.tv_usec;
}

// Context switches so far: voluntary ones are waits (a full socket), involuntary ones preemption.
static inline void switches(uint64_t *voluntary, uint64_t *involuntary) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  *voluntary = (uint64_t)usage.ru_nvcsw;
  *involuntary = (uint64_t)usage.ru_nivcsw;
}

// Peak resident set size, read the same way the bench reads it for Node servers.
static inline long vm_hwm_kib(void) {
  FILE *status = fopen("/proc/self/status", "r");
  if (status == NULL) return -1;
  char line[256];
  long kib = -1;
  while (fgets(line, sizeof line, status) != NULL) {
    if (strncmp(line, "VmHWM:", 6) == 0) {
      kib = strtol(line + 6, NULL, 10);
      break;
    }
  }
  fclose(status);
  return kib;
}

#endif
