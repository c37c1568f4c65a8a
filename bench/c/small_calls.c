// The floor for small transfers: raw sendfile(2) of one small chunk per call, the same loop the
// Node writer runs (bench/workers/small-calls-writer.ts), so the difference is the binding's
// per-call overhead.
//
//   small_calls send <unix-path> <file> <chunks> <chunk-bytes> <warmup-chunks> <deadline>
//     Connects to the sink at <unix-path>, makes the socket non-blocking (every Node socket
//     is), sends <warmup-chunks> untimed, then <chunks> timed. On EAGAIN it waits with poll().
//     stdout: {"calls":C,"eagain":E,"bytes":B,"wallNs":W,"cpuUserUs":U,"cpuSysUs":S}
//
//   small_calls eagain <file> <calls> <chunk-bytes> <deadline>
//     The cost of a call that finds the socket full: fills a socketpair nobody reads, then
//     times <calls> sendfile calls that all fail with EAGAIN.
//     stdout: {"calls":C,"wallNs":W}
#include "common.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

static uint64_t calls, eagain, bytes;

// One chunk, however many calls it takes; the chunks cycle through the file.
static void send_chunk(int sock, int file, off_t span, uint64_t index, size_t chunk) {
  off_t offset = (off_t)((index * chunk) % (uint64_t)span);
  size_t done = 0;
  while (done < chunk) {
    ssize_t sent = sendfile(sock, file, &offset, chunk - done);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) die("sendfile");
      eagain++;
      struct pollfd wait = {.fd = sock, .events = POLLOUT};
      poll(&wait, 1, 1000);
      continue;
    }
    if (sent == 0) {
      fprintf(stderr, "unexpected end of file\n");
      exit(1);
    }
    done += (size_t)sent;
    bytes += (uint64_t)sent;
    calls++;
  }
}

static int open_file(const char *path, size_t chunk, off_t *span) {
  int file = open(path, O_RDONLY);
  if (file < 0) die("open");
  struct stat stats;
  if (fstat(file, &stats) < 0) die("fstat");
  if ((size_t)stats.st_size < chunk) {
    fprintf(stderr, "file smaller than one chunk\n");
    exit(1);
  }
  *span = stats.st_size - stats.st_size % (off_t)chunk;
  return file;
}

static int send_mode(char **argv) {
  set_deadline(argv[7]);
  size_t chunk = strtoull(argv[5], NULL, 10);
  uint64_t chunks = strtoull(argv[4], NULL, 10), warmup = strtoull(argv[6], NULL, 10);
  off_t span;
  int file = open_file(argv[3], chunk, &span);

  struct sockaddr_un address = {.sun_family = AF_UNIX};
  strncpy(address.sun_path, argv[2], sizeof address.sun_path - 1);
  int sock = socket(AF_UNIX, SOCK_STREAM, 0);
  if (sock < 0) die("socket");
  if (connect(sock, (struct sockaddr *)&address, sizeof address) < 0) die("connect");
  if (fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");

  for (uint64_t i = 0; i < warmup; i++) send_chunk(sock, file, span, i, chunk);
  calls = eagain = 0;
  uint64_t user0, sys0, user1, sys1;
  cpu_usage(&user0, &sys0);
  uint64_t start = now_ns();
  for (uint64_t i = 0; i < chunks; i++) send_chunk(sock, file, span, warmup + i, chunk);
  uint64_t end = now_ns();
  cpu_usage(&user1, &sys1);
  close(sock);
  close(file);
  printf("{\"calls\":%llu,\"eagain\":%llu,\"bytes\":%llu,\"wallNs\":%llu,\"cpuUserUs\":%llu,\"cpuSysUs\":%llu}\n",
         (unsigned long long)calls, (unsigned long long)eagain, (unsigned long long)bytes,
         (unsigned long long)(end - start), (unsigned long long)(user1 - user0), (unsigned long long)(sys1 - sys0));
  return 0;
}

static int eagain_mode(char **argv) {
  set_deadline(argv[5]);
  size_t chunk = strtoull(argv[4], NULL, 10);
  uint64_t count = strtoull(argv[3], NULL, 10);
  off_t span;
  int file = open_file(argv[2], chunk, &span);
  int pair[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, pair) < 0) die("socketpair");
  // Fill the writer until the kernel refuses; nobody ever reads pair[1].
  for (;;) {
    off_t offset = 0;
    if (sendfile(pair[0], file, &offset, chunk) < 0) {
      if (errno == EAGAIN) break;
      die("sendfile");
    }
  }
  uint64_t start = now_ns();
  for (uint64_t i = 0; i < count; i++) {
    off_t offset = 0;
    if (sendfile(pair[0], file, &offset, chunk) >= 0 || errno != EAGAIN) {
      fprintf(stderr, "expected EAGAIN\n");
      return 1;
    }
  }
  uint64_t end = now_ns();
  printf("{\"calls\":%llu,\"wallNs\":%llu}\n", (unsigned long long)count, (unsigned long long)(end - start));
  return 0;
}

int main(int argc, char **argv) {
  if (argc >= 8 && strcmp(argv[1], "send") == 0) return send_mode(argv);
  if (argc >= 6 && strcmp(argv[1], "eagain") == 0) return eagain_mode(argv);
  fprintf(stderr,
          "usage: small_calls send <unix-path> <file> <chunks> <chunk> <warmup> <deadline>\n"
          "       small_calls eagain <file> <calls> <chunk> <deadline>\n");
  return 2;
}
