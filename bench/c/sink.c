// The one receiver every bulk and small-call sender is measured against: accepts a single
// connection, reads and discards until EOF, and reports the bytes and the time from the first
// byte to EOF. Being the same C program for every sender keeps receiver cost out of the
// comparison.
//
//   sink tcp <deadline-seconds>          listens on 127.0.0.1, an ephemeral port
//   sink unix <path> <deadline-seconds>  listens on a Unix stream socket at <path>
//
// stdout: {"port":N} or {"path":"..."} once listening, then {"bytes":B,"wallNs":W} at EOF.
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

// Large reads keep the receiver's syscall count low, so it is never the slower side by much.
#define READ_BUFFER (1 << 20)

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sink tcp <deadline> | sink unix <path> <deadline>\n");
    return 2;
  }
  int is_unix = strcmp(argv[1], "unix") == 0;
  set_deadline(is_unix ? (argc > 3 ? argv[3] : "60") : argv[2]);

  int listener;
  if (is_unix) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(argv[2]) >= sizeof address.sun_path) {
      fprintf(stderr, "socket path too long\n");
      return 2;
    }
    strcpy(address.sun_path, argv[2]);
    unlink(argv[2]);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) die("bind");
    if (listen(listener, 1) < 0) die("listen");
    printf("{\"path\":\"%s\"}\n", argv[2]);
  } else {
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0) die("socket");
    if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) die("bind");
    if (listen(listener, 1) < 0) die("listen");
    socklen_t length = sizeof address;
    if (getsockname(listener, (struct sockaddr *)&address, &length) < 0) die("getsockname");
    printf("{\"port\":%d}\n", ntohs(address.sin_port));
  }
  fflush(stdout);

  int connection = accept(listener, NULL, NULL);
  if (connection < 0) die("accept");
  close(listener);
  if (is_unix) unlink(argv[2]);

  char *buffer = malloc(READ_BUFFER);
  if (buffer == NULL) die("malloc");
  uint64_t bytes = 0;
  uint64_t first_byte = 0;
  for (;;) {
    ssize_t got = read(connection, buffer, READ_BUFFER);
    if (got < 0) {
      if (errno == EINTR) continue;
      die("read");
    }
    if (got == 0) break;
    if (bytes == 0) first_byte = now_ns();
    bytes += (uint64_t)got;
  }
  uint64_t eof = now_ns();
  close(connection);
  printf("{\"bytes\":%llu,\"wallNs\":%llu}\n", (unsigned long long)bytes,
         (unsigned long long)(bytes > 0 ? eof - first_byte : 0));
  return 0;
}
