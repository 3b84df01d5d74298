/*
 * replay -- a main() for a fuzz target without libFuzzer: every file named
 * on the command line, or every regular file in a named directory, is fed to
 * LLVMFuzzerTestOneInput once. The normal (gcc) build links each target with
 * this and ctest replays the seed corpus and the kept crash inputs
 * (fuzz/regress/<target>/), so a fixed crash stays fixed without clang.
 */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    int rc = 1;

    if (f == NULL) {
        fprintf(stderr, "replay: %s: cannot open\n", path);
        return 1;
    }
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        buf = malloc((size_t)n + 1);
        if (buf != NULL && fread(buf, 1, (size_t)n, f) == (size_t)n) {
            LLVMFuzzerTestOneInput(buf, (size_t)n);
            rc = 0;
        }
    }
    if (rc != 0) {
        fprintf(stderr, "replay: %s: cannot read\n", path);
    }
    free(buf);
    fclose(f);
    return rc;
}

static int replay_path(const char *path, unsigned long *count)
{
    struct stat st;
    struct dirent *e;
    DIR *d;
    char sub[4096];
    int rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: no such file or directory\n", path);
        return 1;
    }
    if (!S_ISDIR(st.st_mode)) {
        (*count)++;
        return replay_file(path);
    }
    d = opendir(path);
    if (d == NULL) {
        fprintf(stderr, "replay: %s: cannot list\n", path);
        return 1;
    }
    for (e = readdir(d); e != NULL; e = readdir(d)) {
        if (e->d_name[0] == '.') {
            continue;
        }
        snprintf(sub, sizeof(sub), "%s/%s", path, e->d_name);
        rc |= replay_path(sub, count);
    }
    closedir(d);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned long count = 0;
    int rc = 0;
    int i;

    for (i = 1; i < argc; i++) {
        rc |= replay_path(argv[i], &count);
    }
    printf("replay: %lu inputs, %s\n", count, rc == 0 ? "no crash" : "some unreadable");
    if (count == 0) {
        fprintf(stderr, "replay: no input found: nothing was tested\n");
        return 1;
    }
    return rc;
}
