// The reference server for the concurrency scenario, what nginx does with `sendfile on`: one
// thread, epoll (edge-triggered), non-blocking sockets, sendfile(2) in chunks of at most
// 2 MiB (nginx's sendfile_max_chunk, and the chunk @zerocopy/sendfile uses) until EAGAIN.
// Like a sendFile(socket, path) call, each connection opens the file itself; with `shared`,
// the file is opened once at startup and every connection sends from that one fd (pure
// syscall cost, no open/fstat/close per connection: the floor for the low-level API).
//
//   epoll_sendfile_server <file> <connections> <deadline-seconds> [shared]
//
// stdout: {"port":N} once listening; after <connections> transfers finished,
// {"connections":N,"bytes":B,"errors":E,"vmHWMKiB":K,"cpuUserUs":U,"cpuSysUs":S} and exit.
#include "common.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>

#define MAX_CHUNK (2 << 20)
#define MAX_EVENTS 256

struct connection {
  int file;
  off_t offset;
  off_t size;
};

static struct connection *table;
static size_t table_size;
static const char *path;
static int shared_file = -1;
static uint64_t sent_total;
static int finished, errors;

static void finish(int sock, int failed) {
  if (table[sock].file != shared_file) close(table[sock].file);
  table[sock].file = -1;
  // close() on a socket with queued data still delivers it, then the FIN.
  close(sock);
  finished++;
  if (failed) errors++;
}

// Sends until the socket is full or the file is done; 1 when the connection is finished.
static int pump(int sock) {
  struct connection *c = &table[sock];
  while (c->offset < c->size) {
    off_t left = c->size - c->offset;
    off_t before = c->offset;
    ssize_t sent = sendfile(sock, c->file, &c->offset, (size_t)(left < MAX_CHUNK ? left : MAX_CHUNK));
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return 0;
      finish(sock, 1);
      return 1;
    }
    if (sent == 0) break;
    sent_total += (uint64_t)(c->offset - before);
  }
  finish(sock, c->offset != c->size);
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: epoll_sendfile_server <file> <connections> <deadline>\n");
    return 2;
  }
  path = argv[1];
  int connections = atoi(argv[2]);
  set_deadline(argv[3]);
  raise_nofile();
  if (argc > 4 && strcmp(argv[4], "shared") == 0) {
    shared_file = open(path, O_RDONLY | O_CLOEXEC);
    if (shared_file < 0) die("open");
  }

  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = 0};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listener < 0) die("socket");
  if (bind(listener, (struct sockaddr *)&address, sizeof address) < 0) die("bind");
  // The client connects all at once: a short backlog would turn into 1 s SYN retransmits.
  if (listen(listener, 4096) < 0) die("listen");
  socklen_t length = sizeof address;
  if (getsockname(listener, (struct sockaddr *)&address, &length) < 0) die("getsockname");
  printf("{\"port\":%d}\n", ntohs(address.sin_port));
  fflush(stdout);

  int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  struct epoll_event listen_event = {.events = EPOLLIN, .data.fd = listener};
  if (epoll_ctl(epoll, EPOLL_CTL_ADD, listener, &listen_event) < 0) die("epoll_ctl");

  int accepted = 0;
  uint64_t user0 = 0, sys0 = 0, user1, sys1;
  struct epoll_event events[MAX_EVENTS];
  while (finished < connections) {
    int ready = epoll_wait(epoll, events, MAX_EVENTS, -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; i++) {
      int fd = events[i].data.fd;
      if (fd != listener) {
        if (table[fd].file >= 0) pump(fd);
        continue;
      }
      for (;;) {
        int sock = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (sock < 0) {
          if (errno == EAGAIN || errno == EINTR) break;
          die("accept4");
        }
        if (accepted++ == 0) cpu_usage(&user0, &sys0);
        if ((size_t)sock >= table_size) {
          size_t grown = (size_t)sock * 2 + 64;
          table = realloc(table, grown * sizeof *table);
          if (table == NULL) die("realloc");
          for (size_t j = table_size; j < grown; j++) table[j].file = -1;
          table_size = grown;
        }
        int file = shared_file >= 0 ? shared_file : open(path, O_RDONLY | O_CLOEXEC);
        if (file < 0) die("open");
        struct stat stats;
        if (fstat(file, &stats) < 0) die("fstat");
        table[sock] = (struct connection){.file = file, .offset = 0, .size = stats.st_size};
        if (pump(sock)) continue;
        struct epoll_event event = {.events = EPOLLOUT | EPOLLET, .data.fd = sock};
        if (epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &event) < 0) die("epoll_ctl");
      }
    }
  }
  cpu_usage(&user1, &sys1);
  printf("{\"connections\":%d,\"bytes\":%llu,\"errors\":%d,\"vmHWMKiB\":%ld,\"cpuUserUs\":%llu,\"cpuSysUs\":%llu}\n",
         finished, (unsigned long long)sent_total, errors, vm_hwm_kib(), (unsigned long long)(user1 - user0),
         (unsigned long long)(sys1 - sys0));
  return 0;
}
