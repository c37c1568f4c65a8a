// The HTTP load when wrk is not installed: N keep-alive connections on one thread (level-triggered
// epoll), each sending `GET <path>` again as soon as the previous response's body is complete,
// for <seconds>. Like wrk -t1, it reads and discards bodies; the bench checks the bytes of every
// server separately, before timing.
//
//   http_load <port> <path> <connections> <seconds> <deadline-seconds> [<fetches>]
//
// With <fetches>, a bounded load instead (the HTTP scenario's event-loop delay run): each
// connection sends <fetches> requests one after another on the same keep-alive connection, then
// closes; the run ends when every connection is done, or after <seconds> at the latest.
//
// stdout: {"requests":R,"seconds":S,"errors":E,"bodyBytes":B}: R responses completed within the
// window, S the window actually measured, E responses that were not `200` with a Content-Length,
// or connections that failed (either ends the run with a non-zero E, which the bench reports),
// B the body bytes received, those of responses the window cut short included.
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>

// 256 KiB: fewer reads, so the client's own CPU takes less from the server it measures.
#define READ_BUFFER (256 * 1024)
#define HEADER_LIMIT 4096
#define MAX_EVENTS 256

struct connection {
  int sock;
  // Response headers gathered so far (a header may arrive split over reads).
  char header[HEADER_LIMIT];
  size_t header_length;
  int in_body;
  uint64_t body_left;
  // Responses still to ask for on this connection, in the bounded mode; unused otherwise.
  int fetches_left;
};

static const char *request_path;
static char request[1024];
static size_t request_length;

static void send_request(struct connection *c) {
  c->header_length = 0;
  c->in_body = 0;
  c->body_left = 0;
  // The request is far smaller than an empty socket buffer: one write always takes all of it.
  if (write(c->sock, request, request_length) != (ssize_t)request_length) die("write request");
}

// Parses a complete header block; the body length, or -1 when it is not a 200 with a length.
static long long body_length(const char *header, size_t length) {
  if (length < 12 || strncmp(header, "HTTP/1.1 200", 12) != 0) return -1;
  const char *line = header;
  const char *end = header + length;
  while (line < end) {
    const char *next = memchr(line, '\n', (size_t)(end - line));
    if (next == NULL) break;
    if (strncasecmp(line, "content-length:", 15) == 0) return strtoll(line + 15, NULL, 10);
    line = next + 1;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: http_load <port> <path> <connections> <seconds> <deadline> [<fetches>]\n");
    return 2;
  }
  set_deadline(argv[5]);
  raise_nofile();
  request_path = argv[2];
  int connections = atoi(argv[3]);
  int fetches = argc > 6 ? atoi(argv[6]) : 0;
  uint64_t window_ns = (uint64_t)(atof(argv[4]) * 1e9);
  request_length = (size_t)snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%s\r\n\r\n", request_path, argv[1]);
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[1]))};
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  int epoll = epoll_create1(EPOLL_CLOEXEC);
  if (epoll < 0) die("epoll_create1");
  struct connection *pool = calloc((size_t)connections, sizeof *pool);
  char *buffer = malloc(READ_BUFFER);
  if (pool == NULL || buffer == NULL) die("malloc");
  for (int i = 0; i < connections; i++) {
    // Blocking connect: the connections are set up before the window opens.
    int sock = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (sock < 0) die("socket");
    if (connect(sock, (struct sockaddr *)&address, sizeof address) < 0) die("connect");
    int one = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    pool[i].sock = sock;
    pool[i].fetches_left = fetches;
    struct epoll_event event = {.events = EPOLLIN, .data.ptr = &pool[i]};
    if (epoll_ctl(epoll, EPOLL_CTL_ADD, sock, &event) < 0) die("epoll_ctl");
  }

  uint64_t requests = 0, errors = 0, body_bytes = 0;
  uint64_t start = now_ns(), deadline = start + window_ns;
  for (int i = 0; i < connections; i++) send_request(&pool[i]);
  int open_count = connections;
  struct epoll_event events[MAX_EVENTS];
  while (open_count > 0 && now_ns() < deadline) {
    int ready = epoll_wait(epoll, events, MAX_EVENTS, 100);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    for (int i = 0; i < ready; i++) {
      struct connection *c = events[i].data.ptr;
      ssize_t got = read(c->sock, buffer, READ_BUFFER);
      if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (got <= 0) {
        // The server closed a keep-alive connection or reset it: count it and stop using it.
        errors++;
        close(c->sock);
        open_count--;
        continue;
      }
      const char *data = buffer;
      size_t left = (size_t)got;
      while (left > 0) {
        if (!c->in_body) {
          size_t take = left < HEADER_LIMIT - c->header_length ? left : HEADER_LIMIT - c->header_length;
          memcpy(c->header + c->header_length, data, take);
          size_t before = c->header_length;
          c->header_length += take;
          char *end = memmem(c->header, c->header_length, "\r\n\r\n", 4);
          if (end == NULL) {
            if (c->header_length == HEADER_LIMIT) die("response header too long");
            left = 0;
            break;
          }
          size_t header_size = (size_t)(end - c->header) + 4;
          long long length = body_length(c->header, header_size);
          if (length < 0) {
            fprintf(stderr, "unexpected response: %.*s\n", (int)header_size, c->header);
            return 1;
          }
          size_t consumed = header_size - before;
          data += consumed;
          left -= consumed;
          c->in_body = 1;
          c->body_left = (uint64_t)length;
        }
        size_t body = left < c->body_left ? left : (size_t)c->body_left;
        c->body_left -= body;
        body_bytes += body;
        data += body;
        left -= body;
        if (c->body_left == 0) {
          requests++;
          // Nothing is pipelined, so nothing may follow a complete body.
          if (left > 0) {
            fprintf(stderr, "%zu bytes after a complete response\n", left);
            return 1;
          }
          if (fetches > 0 && --c->fetches_left == 0) {
            close(c->sock);
            open_count--;
            break;
          }
          send_request(c);
        }
      }
    }
  }
  uint64_t measured = now_ns() - start;
  printf("{\"requests\":%llu,\"seconds\":%.6f,\"errors\":%llu,\"bodyBytes\":%llu}\n", (unsigned long long)requests, (double)measured / 1e9,
         (unsigned long long)errors, (unsigned long long)body_bytes);
  return 0;
}
