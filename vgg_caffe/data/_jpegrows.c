/* The top rows of a JPEG, decoded by the system's libjpeg(-turbo) and nothing below them.

   libjpeg emits rows top to bottom and a row it has emitted is final, so the first R rows of a
   decode stopped after row R are the first R rows of the whole decode: the same pixels as
   OpenCV's cv::imdecode (IMREAD_COLOR: BGR out, JDCT_ISLOW, fancy upsampling, DCT-domain
   scaling for the reduced reads), for the work of R rows. A random crop of a rescaled image
   needs the rows down to the crop's far edge only, on average about four fifths of them
   (vgg_caffe/data/image.py, decode_top).

   decode_top(data, out, height, width, rows, reduce) -> rows decoded
     data    the JPEG bytes (any bytes-like object)
     out     a writable C-contiguous buffer of height * width * 3 bytes (BGR rows)
     height, width   the size the decode must have (the frame's size reduced by `reduce`)
     rows    how many rows to decode (at most height)
     reduce  1, 2, 4 or 8: libjpeg's scale_denom
   Raises ValueError with libjpeg's message for data it cannot decode, or when the decode's size
   is not height x width. The GIL is released while decoding. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <jpeglib.h>

struct failure {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

/* libjpeg's default error_exit ends the process; unwind to decode_top instead. */
static void on_error(j_common_ptr cinfo) {
    struct failure *f = (struct failure *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, f->message);
    longjmp(f->jump, 1);
}

/* Warnings (corrupt-data notes libjpeg recovers from) change no pixel that OpenCV keeps. */
static void on_message(j_common_ptr cinfo, int level) {
    (void)cinfo;
    (void)level;
}

/* 0 on success, 1 on a libjpeg error (message in f->message), 2 on a size mismatch. */
static int run(struct jpeg_decompress_struct *d, struct failure *f, const unsigned char *data,
               unsigned long size, unsigned char *out, int height, int width, int rows,
               int reduce, int *done) {
    if (setjmp(f->jump))
        return 1;
    jpeg_create_decompress(d);
    jpeg_mem_src(d, data, size);
    jpeg_read_header(d, TRUE);
    d->out_color_space = JCS_EXT_BGR;
    d->dct_method = JDCT_ISLOW;
    d->scale_num = 1;
    d->scale_denom = (unsigned int)reduce;
    jpeg_start_decompress(d);
    if ((int)d->output_height != height || (int)d->output_width != width || d->output_components != 3)
        return 2;
    while ((int)d->output_scanline < rows) {
        JSAMPROW row = out + (size_t)d->output_scanline * (size_t)width * 3;
        jpeg_read_scanlines(d, &row, 1);
    }
    *done = (int)d->output_scanline;
    return 0;
}

static PyObject *decode_top(PyObject *self, PyObject *args) {
    Py_buffer data, out;
    int height, width, rows, reduce, status, done = 0;
    struct jpeg_decompress_struct d;
    struct failure f;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*w*iiii", &data, &out, &height, &width, &rows, &reduce))
        return NULL;
    if (height <= 0 || width <= 0 || rows < 0 || rows > height ||
        (reduce != 1 && reduce != 2 && reduce != 4 && reduce != 8) ||
        out.len < (Py_ssize_t)height * width * 3 || !PyBuffer_IsContiguous(&out, 'C')) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&out);
        PyErr_SetString(PyExc_ValueError, "decode_top: bad arguments");
        return NULL;
    }
    memset(&d, 0, sizeof d);   /* so that destroying it is safe whatever point the decode reached */
    d.err = jpeg_std_error(&f.mgr);
    f.mgr.error_exit = on_error;
    f.mgr.emit_message = on_message;
    f.message[0] = '\0';
    Py_BEGIN_ALLOW_THREADS
    status = run(&d, &f, (const unsigned char *)data.buf, (unsigned long)data.len,
                 (unsigned char *)out.buf, height, width, rows, reduce, &done);
    jpeg_destroy_decompress(&d);   /* also ends a decode stopped before its last row */
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    PyBuffer_Release(&out);
    if (status == 1) {
        PyErr_Format(PyExc_ValueError, "libjpeg: %s", f.message);
        return NULL;
    }
    if (status == 2) {
        PyErr_SetString(PyExc_ValueError, "the decode is not of the expected size or not 3 channels");
        return NULL;
    }
    return PyLong_FromLong(done);
}

static PyMethodDef methods[] = {
    {"decode_top", decode_top, METH_VARARGS, "decode_top(data, out, height, width, rows, reduce) -> rows"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_jpegrows",
                                    "The top rows of a JPEG (see _jpegrows.c).", -1, methods};

PyMODINIT_FUNC PyInit__jpegrows(void) { return PyModule_Create(&module); }
