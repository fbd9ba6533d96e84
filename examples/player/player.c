/* A GStreamer player with nerve linked in statically, as an Android or iOS app embeds it: the two
 * plugins come from libgstnerve.a / libgstnerveabr.a (built by cargo-c, see build.sh) and are
 * registered by hand; GStreamer itself and its other plugins are the system's.
 *
 *   nerve-player URI [SINK]
 *
 * plays URI (a DASH manifest over HTTP, or any clip uridecodebin can read) through nerveabr and
 * nervesr (x2) into SINK (default: fakesink; autovideosink on a desktop). It prints one line per
 * nerveabr decision and, at the end, nervesr's counters and the output size, which
 * examples/player/test.sh checks. Exit status: 0 at EOS, 1 on an error. */
#include <gst/gst.h>
#include <stdio.h>

GST_PLUGIN_STATIC_DECLARE(nerve);    /* void gst_plugin_nerve_register (void); */
GST_PLUGIN_STATIC_DECLARE(nerveabr);

static void print_structure(const char *tag, const GstStructure *s) {
  gchar *text = gst_structure_to_string(s);
  g_print("%s %s\n", tag, text);
  g_free(text);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    g_printerr("usage: %s URI [SINK]\n", argv[0]);
    return 2;
  }
  gst_init(&argc, &argv);
  GST_PLUGIN_STATIC_REGISTER(nerve);
  GST_PLUGIN_STATIC_REGISTER(nerveabr);

  gchar *desc = g_strdup_printf(
      "urisourcebin uri=\"%s\" ! decodebin3 ! nerveabr policy=nerve ! videoconvert ! "
      "nervesr name=sr scale=2 stats-interval=0 ! %s name=sink",
      argv[1], argc > 2 ? argv[2] : "fakesink sync=false");
  GError *err = NULL;
  GstElement *pipeline = gst_parse_launch(desc, &err);
  g_free(desc);
  if (!pipeline) {
    g_printerr("pipeline: %s\n", err->message);
    return 1;
  }
  gst_element_set_state(pipeline, GST_STATE_PLAYING);

  int status = 1;
  GstBus *bus = gst_element_get_bus(pipeline);
  for (gboolean done = FALSE; !done;) {
    GstMessage *msg = gst_bus_timed_pop(bus, GST_CLOCK_TIME_NONE);
    switch (GST_MESSAGE_TYPE(msg)) {
      case GST_MESSAGE_ELEMENT: {
        const GstStructure *s = gst_message_get_structure(msg);
        if (gst_structure_has_name(s, "nerveabr-decision")) print_structure("decision", s);
        if (gst_structure_has_name(s, "nervesr-stats")) print_structure("stats", s);
        break;
      }
      case GST_MESSAGE_ERROR: {
        GError *e = NULL;
        gst_message_parse_error(msg, &e, NULL);
        g_printerr("error from %s: %s\n", GST_OBJECT_NAME(msg->src), e->message);
        g_error_free(e);
        done = TRUE;
        break;
      }
      case GST_MESSAGE_EOS: {
        GstElement *sink = gst_bin_get_by_name(GST_BIN(pipeline), "sink");
        GstPad *pad = gst_element_get_static_pad(sink, "sink");
        GstCaps *caps = gst_pad_get_current_caps(pad);
        if (caps) print_structure("output", gst_caps_get_structure(caps, 0));
        g_print("eos\n");
        if (caps) gst_caps_unref(caps);
        gst_object_unref(pad);
        gst_object_unref(sink);
        status = 0;
        done = TRUE;
        break;
      }
      default:
        break;
    }
    gst_message_unref(msg);
  }
  gst_object_unref(bus);
  gst_element_set_state(pipeline, GST_STATE_NULL);
  gst_object_unref(pipeline);
  return status;
}
