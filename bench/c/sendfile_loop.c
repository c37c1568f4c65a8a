// The kernel's limit for one bulk transfer: a blocking TCP socket and a plain sendfile(2) loop,
// no event loop, no chunking. The Node senders are judged against this.
//
//   sendfile_loop <port> <file> <deadline-seconds> [nonblock]
//
// With `nonblock`, the socket is non-blocking and each call sends at most 2 MiB, waiting with
// poll() on EAGAIN: the strategy @zerocopy/sendfile's async driver uses, minus Node, so the
// two C rows separate what the strategy costs from what the binding costs.
//
// stdout: {"bytes","eagain","cpuUserUs","cpuSysUs","senderWallNs","voluntarySwitches",
// "involuntarySwitches"} (the bulk-sender worker's fields), CPU and wall measured from
// the first sendfile call until the FIN is queued (the same window the Node senders use).
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: sendfile_loop <port> <file> <deadline>\n");
    return 2;
  }
  set_deadline(argv[3]);
  int file = open(argv[2], O_RDONLY);
  if (file < 0) die("open");
  struct stat stats;
  if (fstat(file, &stats) < 0) die("fstat");

  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int sock = socket(AF_INET, SOCK_STREAM, 0);
  if (sock < 0) die("socket");
  if (connect(sock, (struct sockaddr *)&address, sizeof address) < 0) die("connect");
  int nonblocking = argc > 4 && strcmp(argv[4], "nonblock") == 0;
  if (nonblocking && fcntl(sock, F_SETFL, fcntl(sock, F_GETFL) | O_NONBLOCK) < 0) die("fcntl");
  uint64_t eagain = 0;

  uint64_t user0, sys0, user1, sys1, voluntary0, involuntary0, voluntary1, involuntary1;
  switches(&voluntary0, &involuntary0);
  cpu_usage(&user0, &sys0);
  uint64_t start = now_ns();
  off_t offset = 0;
  while (offset < stats.st_size) {
    size_t wanted = (size_t)(stats.st_size - offset);
    if (nonblocking && wanted > (2 << 20)) wanted = 2 << 20;
    ssize_t sent = sendfile(sock, file, &offset, wanted);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN || !nonblocking) die("sendfile");
      eagain++;
      struct pollfd wait = {.fd = sock, .events = POLLOUT};
      poll(&wait, 1, -1);
      continue;
    }
    if (sent == 0) break;
  }
  if (shutdown(sock, SHUT_WR) < 0) die("shutdown");
  uint64_t end = now_ns();
  cpu_usage(&user1, &sys1);
  switches(&voluntary1, &involuntary1);

  // Wait for the receiver to close, so the process outlives the transfer like the Node senders.
  char drain[64];
  while (read(sock, drain, sizeof drain) > 0) {
  }
  close(sock);
  close(file);
  printf("{\"bytes\":%lld,\"eagain\":%llu,\"cpuUserUs\":%llu,\"cpuSysUs\":%llu,\"senderWallNs\":%llu,"
         "\"voluntarySwitches\":%llu,\"involuntarySwitches\":%llu}\n",
         (long long)offset, (unsigned long long)eagain, (unsigned long long)(user1 - user0), (unsigned long long)(sys1 - sys0),
         (unsigned long long)(end - start), (unsigned long long)(voluntary1 - voluntary0),
         (unsigned long long)(involuntary1 - involuntary0));
  return 0;
}
