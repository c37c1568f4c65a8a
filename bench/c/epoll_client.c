// The load for the concurrency scenario: opens N connections to 127.0.0.1:<port> at once and
// reads them all with one non-blocking epoll loop, discarding the bytes. Being C keeps the
// client's own cost low and the same for every server.
//
//   epoll_client <port> <connections> <bytes-per-connection> <deadline-seconds>
//
// stdout: {"connections":N,"ok":K,"wrong":W,"failed":F,"bytes":B,"wallNs":T}, where ok counts
// connections that got exactly the expected bytes before EOF, and T runs from the first
// connect() to the last EOF.
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#define READ_BUFFER (256 * 1024)
#define MAX_EVENTS 256

int main(int argc, char **argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: epoll_client <port> <connections> <bytes-per-connection> <deadline>\n");
    return 2;
  }
  set_deadline(argv[4]);
  raise_nofile();
  int connections = atoi(argv[2]);
  uint64_t expected = strtoull(argv[3], NULL, 10);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  // Received bytes per connection, indexed by fd (fds are small and dense).
  uint64_t *received = NULL;
  size_t received_size = 0;
  char *buffer = malloc(READ_BUFFER);
  if (buffer == NULL) die("malloc");

  uint64_t start = now_ns();
  for (int i = 0; i < connections; i++) {
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    if (connect(sock, (struct sockaddr *)&address, sizeof address) < 0 && errno != EINPROGRESS) die("connect");
    if ((size_t)sock >= received_size) {
      size_t grown = (size_t)sock * 2 + 64;
      received = realloc(received, grown * sizeof *received);
      if (received == NULL) die("realloc");
      memset(received + received_size, 0, (grown - received_size) * sizeof *received);
      received_size = grown;
    }
    received[sock] = 0;
    struct epoll_event event = {.events = EPOLLIN, .data.fd = sock};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &event) < 0) die("epoll_ctl");
  }

  int open_count = connections, ok = 0, wrong = 0, failed = 0;
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
        received[sock] += (uint64_t)got;
        total += (uint64_t)got;
        continue;
      }
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      // EOF or a reset: this connection is finished either way.
      if (got < 0) failed++;
      else if (received[sock] == expected) ok++;
      else wrong++;
      epoll_ctl(epoll, EPOLL_CTL_DEL, sock, NULL);
      close(sock);
      open_count--;
    }
  }
  uint64_t end = now_ns();
  printf("{\"connections\":%d,\"ok\":%d,\"wrong\":%d,\"failed\":%d,\"bytes\":%llu,\"wallNs\":%llu}\n", connections, ok,
         wrong, failed, (unsigned long long)total, (unsigned long long)(end - start));
  return 0;
}
