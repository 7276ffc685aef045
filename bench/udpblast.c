/* udpblast: the load generator of bench/statsd_race.py. Python cannot offer millions of metrics
 * a second, so the sender is a few lines of C: sendmmsg() in batches of 64 datagrams to one
 * loopback port, paced by the clock, counters only (`race.kNN:1|c`), so that the sum a daemon
 * counts is exactly the number of metrics it absorbed. It cycles through enough different packets
 * (at least 64) to carry every one of the KEYS keys, so many keys (bench/fleet_bench.py's 10k+
 * counters a host) all reach the daemon.
 *
 *   udpblast PORT SECONDS METRICS_PER_SECOND(0: as fast as it can) LINES_PER_PACKET KEYS
 *
 * Prints "packets metrics seconds" on stdout. Only ever sends to 127.0.0.1. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define MAXPKT 1400

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: udpblast PORT SECONDS METRICS_PER_SECOND LINES_PER_PACKET KEYS\n");
        return 2;
    }
    int port = atoi(argv[1]), lines = atoi(argv[4]), keys = atoi(argv[5]);
    double seconds = atof(argv[2]), rate = atof(argv[3]);
    if (port <= 0 || port > 65535 || seconds <= 0 || lines <= 0 || keys <= 0) {
        fprintf(stderr, "udpblast: bad arguments\n");
        return 2;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &to.sin_addr);
    if (fd < 0 || connect(fd, (struct sockaddr *)&to, sizeof to) < 0) {
        perror("udpblast");
        return 1;
    }
    /* npk >= BATCH different packets, cycling over the keys; the first BATCH are repeated after
     * the last so that every run of BATCH from an offset below npk is contiguous for sendmmsg */
    int per = lines < (MAXPKT - 32) / 24 ? lines : (MAXPKT - 32) / 24; /* lines that always fit */
    int npk = (keys + per - 1) / per;
    if (npk < BATCH)
        npk = BATCH;
    char *buf = malloc((size_t)npk * MAXPKT);
    struct iovec *iov = calloc(npk, sizeof *iov);
    struct mmsghdr *msgs = calloc(npk + BATCH, sizeof *msgs);
    int *in_packet = calloc(npk + BATCH, sizeof *in_packet);
    if (!buf || !iov || !msgs || !in_packet) {
        perror("udpblast");
        return 1;
    }
    int k = 0;
    for (int b = 0; b < npk; b++) {
        char *pkt = buf + (size_t)b * MAXPKT;
        int len = 0, l = 0;
        for (; l < lines && len < MAXPKT - 32; l++, k = (k + 1) % keys)
            len += snprintf(pkt + len, MAXPKT - len, "%srace.k%d:1|c", l ? "\n" : "", k);
        in_packet[b] = l;
        iov[b].iov_base = pkt;
        iov[b].iov_len = len;
        msgs[b].msg_hdr.msg_iov = &iov[b];
        msgs[b].msg_hdr.msg_iovlen = 1;
    }
    for (int b = 0; b < BATCH; b++) {
        msgs[npk + b] = msgs[b];
        in_packet[npk + b] = in_packet[b];
    }
    double start = now(), pps = rate / lines;
    long long packets = 0, metrics = 0;
    int at = 0; /* the next packet of the cycle */
    while (now() - start < seconds) {
        if (pps > 0) {
            double ahead = packets / pps - (now() - start);
            if (ahead > 0) {
                struct timespec ts = {(time_t)ahead, (long)((ahead - (time_t)ahead) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        int n = sendmmsg(fd, msgs + at, BATCH, 0);
        if (n < 0)
            continue; /* ENOBUFS and the like: not sent, not counted */
        packets += n;
        for (int i = 0; i < n; i++)
            metrics += in_packet[at + i];
        at = (at + n) % npk;
    }
    printf("%lld %lld %.6f\n", packets, metrics, now() - start);
    return 0;
}
