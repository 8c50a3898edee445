/*
 * netdelay: netem's delay and jitter in user space, for kernels built without sch_netem (this
 * machine's). iptables sends a network namespace's packets to an NFQUEUE; this program holds each
 * one for `delay` +/- `jitter` ms (uniform, as netem's default distribution, never below 0) and
 * then accepts it. Like netem with jitter, packets may leave out of order.
 *
 *   netdelay --queue N --delay-ms D [--jitter-ms J] [--seed S]
 *
 * Prints "ready" once bound to the queue. On SIGTERM or SIGINT it accepts every packet it still
 * holds, prints "held N packets" (how many it delayed) and exits 0: ending a delay never drops
 * traffic. A full hold (65,536 packets) accepts at once rather than drop: the fault is delay, not
 * loss (loss has its own fault).
 * The iptables rule should use --queue-bypass, so traffic flows when this program is not running.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HOLD_MAX 65536

struct held {
  uint64_t due_us;
  uint32_t id;
};

static struct held heap[HOLD_MAX];
static size_t held_count = 0;
static unsigned long long held_total = 0;
static struct nfq_q_handle *queue_handle;
static long delay_ms = 0, jitter_ms = 0;
static volatile sig_atomic_t stopping = 0;
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000ULL + (uint64_t)ts.tv_nsec / 1000ULL;
}

/* xorshift64*: reproducible from --seed, good enough for jitter. */
static double uniform01(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 2685821657736338717ULL) >> 11) / (double)(1ULL << 53);
}

static void heap_push(struct held item) {
  size_t i = held_count++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (heap[parent].due_us <= item.due_us) break;
    heap[i] = heap[parent];
    i = parent;
  }
  heap[i] = item;
}

static struct held heap_pop(void) {
  struct held top = heap[0];
  struct held last = heap[--held_count];
  size_t i = 0;
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= held_count) break;
    if (child + 1 < held_count && heap[child + 1].due_us < heap[child].due_us) child++;
    if (last.due_us <= heap[child].due_us) break;
    heap[i] = heap[child];
    i = child;
  }
  heap[i] = last;
  return top;
}

static void accept_packet(uint32_t id) { nfq_set_verdict(queue_handle, id, NF_ACCEPT, 0, NULL); }

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *data, void *arg) {
  (void)qh;
  (void)msg;
  (void)arg;
  struct nfqnl_msg_packet_hdr *header = nfq_get_msg_packet_hdr(data);
  if (!header) return 0;
  uint32_t id = ntohl(header->packet_id);
  double hold_ms = (double)delay_ms + (uniform01() * 2.0 - 1.0) * (double)jitter_ms;
  if (hold_ms <= 0 || held_count == HOLD_MAX) {
    accept_packet(id);
    return 0;
  }
  held_total++;
  heap_push((struct held){.due_us = now_us() + (uint64_t)(hold_ms * 1000.0), .id = id});
  return 0;
}

static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

static void usage(void) {
  fprintf(stderr, "usage: netdelay --queue N --delay-ms D [--jitter-ms J] [--seed S]\n");
  exit(2);
}

static long number_arg(const char *name, const char *value) {
  char *end = NULL;
  errno = 0;
  long n = strtol(value, &end, 10);
  if (errno || !end || *end || n < 0) {
    fprintf(stderr, "netdelay: %s must be a whole number >= 0, got \"%s\"\n", name, value);
    exit(2);
  }
  return n;
}

int main(int argc, char **argv) {
  long queue_num = -1;
  for (int i = 1; i < argc; i++) {
    if (i + 1 >= argc) usage();
    if (!strcmp(argv[i], "--queue")) queue_num = number_arg("--queue", argv[++i]);
    else if (!strcmp(argv[i], "--delay-ms")) delay_ms = number_arg("--delay-ms", argv[++i]);
    else if (!strcmp(argv[i], "--jitter-ms")) jitter_ms = number_arg("--jitter-ms", argv[++i]);
    else if (!strcmp(argv[i], "--seed")) rng_state ^= (uint64_t)number_arg("--seed", argv[++i]) * 0x2545f4914f6cdd1dULL;
    else usage();
  }
  if (queue_num < 0 || queue_num > 65535) usage();

  struct sigaction action = {0};
  action.sa_handler = on_signal;
  sigaction(SIGTERM, &action, NULL);
  sigaction(SIGINT, &action, NULL);

  struct nfq_handle *handle = nfq_open();
  if (!handle) {
    perror("netdelay: nfq_open");
    return 1;
  }
  queue_handle = nfq_create_queue(handle, (uint16_t)queue_num, &on_packet, NULL);
  if (!queue_handle) {
    fprintf(stderr, "netdelay: cannot bind queue %ld (another program holds it?)\n", queue_num);
    return 1;
  }
  /* Metadata only: a verdict needs the packet's id, not its bytes. */
  if (nfq_set_mode(queue_handle, NFQNL_COPY_META, 0) < 0) {
    perror("netdelay: nfq_set_mode");
    return 1;
  }
  nfq_set_queue_maxlen(queue_handle, HOLD_MAX);
  int fd = nfq_fd(handle);
  int on = 1;
  setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &on, sizeof on);
  int rcvbuf = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);
  printf("ready\n");
  fflush(stdout);

  char buf[65536] __attribute__((aligned));
  while (!stopping) {
    int timeout_ms = -1;
    if (held_count > 0) {
      uint64_t now = now_us();
      timeout_ms = heap[0].due_us <= now ? 0 : (int)((heap[0].due_us - now + 999) / 1000);
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int ready = poll(&pfd, 1, timeout_ms);
    if (ready > 0 && (pfd.revents & POLLIN)) {
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) nfq_handle_packet(handle, buf, (int)n);
    }
    uint64_t now = now_us();
    while (held_count > 0 && heap[0].due_us <= now) accept_packet(heap_pop().id);
  }
  while (held_count > 0) accept_packet(heap_pop().id);
  printf("held %llu packets\n", held_total);
  fflush(stdout);
  nfq_destroy_queue(queue_handle);
  nfq_close(handle);
  return 0;
}
