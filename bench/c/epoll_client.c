// The load for the concurrency scenarios: opens N connections to 127.0.0.1:<port>, then reads
// them all with one level-triggered epoll loop and 256 KiB reads. Being C keeps the client's own
// cost low and the same for every server.
//
//   epoll_client <port> <connections> <bytes-per-connection> <deadline-seconds> [verify <file>]
//
// Two modes, because a client that checks what it reads is slower than the servers it is meant
// to time, and then every server looks as fast as the client (the 1.03× that hid the gap to C):
//
// - count (the default, for timing): counts bytes and EOFs, nothing per connection. The bytes
//   land in one reused buffer and are never looked at.
// - verify <file>: untimed, a separate run. Tracks every connection's offset and compares each
//   byte it reads with the file (mmap), so a connection that got the wrong bytes, too few or too
//   many is caught, not just a wrong total.
//
// stdout: {"connections":N,"eof":E,"failed":F,"wrong":W,"bytes":B,"wallNs":T}: E connections
// ended with EOF, F with an error; W is the number of EOF connections whose stream differed from
// the file (verify only; always 0 when counting). T runs from the first connect() to the last EOF.
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define READ_BUFFER (256 * 1024)
#define MAX_EVENTS 256

// Verify mode only: where each connection's stream is in the file, indexed by fd (small, dense).
struct expected_stream {
  const unsigned char *content;
  uint64_t size;
  uint64_t *offsets;
  unsigned char *wrong;
  size_t slots;
};

static void track(struct expected_stream *expected, int sock) {
  if ((size_t)sock < expected->slots) {
    expected->offsets[sock] = 0;
    expected->wrong[sock] = 0;
    return;
  }
  size_t grown = (size_t)sock * 2 + 64;
  expected->offsets = realloc(expected->offsets, grown * sizeof *expected->offsets);
  expected->wrong = realloc(expected->wrong, grown);
  if (expected->offsets == NULL || expected->wrong == NULL) die("realloc");
  memset(expected->offsets + expected->slots, 0, (grown - expected->slots) * sizeof *expected->offsets);
  memset(expected->wrong + expected->slots, 0, grown - expected->slots);
  expected->slots = grown;
}

// Compares what one read returned with the file at this connection's offset.
static void check(struct expected_stream *expected, int sock, const char *data, size_t length) {
  uint64_t offset = expected->offsets[sock];
  if (offset + length > expected->size || memcmp(expected->content + offset, data, length) != 0) expected->wrong[sock] = 1;
  expected->offsets[sock] = offset + length;
}

static int complete(const struct expected_stream *expected, int sock) {
  return !expected->wrong[sock] && expected->offsets[sock] == expected->size;
}

static const unsigned char *map_file(const char *path, uint64_t *size) {
  int file = open(path, O_RDONLY | O_CLOEXEC);
  if (file < 0) die("open");
  struct stat stats;
  if (fstat(file, &stats) < 0) die("fstat");
  *size = (uint64_t)stats.st_size;
  void *content = *size > 0 ? mmap(NULL, *size, PROT_READ, MAP_PRIVATE, file, 0) : (void *)"";
  if (content == MAP_FAILED) die("mmap");
  close(file);
  return content;
}

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: epoll_client <port> <connections> <bytes-per-connection> <deadline> [verify <file>]\n");
    return 2;
  }
  set_deadline(argv[4]);
  raise_nofile();
  int connections = atoi(argv[2]);
  uint64_t expected_bytes = strtoull(argv[3], NULL, 10);
  int verify = argc > 6 && strcmp(argv[5], "verify") == 0;
  struct expected_stream expected = {0};
  if (verify) {
    expected.content = map_file(argv[6], &expected.size);
    if (expected.size != expected_bytes) {
      fprintf(stderr, "verify: the file has %llu bytes, not %llu\n", (unsigned long long)expected.size, (unsigned long long)expected_bytes);
      return 2;
    }
  }
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  char *buffer = malloc(READ_BUFFER);
  if (buffer == NULL) die("malloc");

  uint64_t start = now_ns();
  for (int i = 0; i < connections; i++) {
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    if (connect(sock, (struct sockaddr *)&address, sizeof address) < 0 && errno != EINPROGRESS) die("connect");
    if (verify) track(&expected, sock);
    // Level-triggered: one read per readiness, and the connection comes back while bytes remain.
    struct epoll_event event = {.events = EPOLLIN, .data.fd = sock};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &event) < 0) die("epoll_ctl");
  }

  int open_count = connections, eof = 0, failed = 0, wrong = 0;
  uint64_t total = 0;
  struct epoll_event events[MAX_EVENTS];
  while (open_count > 0) {
    int ready = epoll_wait(epoll, events, MAX_EVENTS, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; i++) {
      int sock = events[i].data.fd;
      ssize_t got = read(sock, buffer, READ_BUFFER);
      if (got > 0) {
        total += (uint64_t)got;
        if (verify) check(&expected, sock, buffer, (size_t)got);
        continue;
      }
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      // EOF or a reset: this connection is finished either way. close() also leaves the epoll set.
      if (got < 0) {
        failed++;
      } else {
        eof++;
        if (verify && !complete(&expected, sock)) wrong++;
      }
      close(sock);
      open_count--;
    }
  }
  uint64_t end = now_ns();
  printf("{\"connections\":%d,\"eof\":%d,\"failed\":%d,\"wrong\":%d,\"bytes\":%llu,\"wallNs\":%llu}\n", connections, eof, failed, wrong,
         (unsigned long long)total, (unsigned long long)(end - start));
  return 0;
}
