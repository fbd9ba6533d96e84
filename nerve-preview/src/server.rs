//! The RTSP server that hands the preview to viewers (gst-rtsp-server, the library media servers
//! built on GStreamer already use), on its own GLib main context and thread.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::{Context as _, anyhow};
use gst::glib;
use gst::prelude::*;
use gst_rtsp_server::prelude::*;

use crate::chain::{self, PreviewConfig};

/// A running preview server. Dropping it stops the server and its thread.
pub struct PreviewServer {
    port: u16,
    mount: String,
    context: glib::MainContext,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
    source: Option<glib::SourceId>,
    /// The enhancement elements of every media the factory made (weak: a torn-down media's go).
    elements: Arc<Mutex<Vec<glib::WeakRef<gst::Element>>>>,
}

impl PreviewServer {
    /// Serves `config`'s preview at `rtsp://address:port/mount`; port 0 picks a free one.
    /// One pipeline is shared by all viewers of the mount, as a live preview should be.
    pub fn start(config: &PreviewConfig, address: &str, port: u16, mount: &str) -> anyhow::Result<Self> {
        crate::init()?;
        if !mount.starts_with('/') || mount.len() < 2 {
            return Err(anyhow!("mount '{mount}' must start with '/' and name something"));
        }
        let description = config.describe().map_err(|e| anyhow!(e))?;
        let server = gst_rtsp_server::RTSPServer::new();
        server.set_address(address);
        server.set_service(&port.to_string());
        let factory = gst_rtsp_server::RTSPMediaFactory::new();
        factory.set_launch(&format!("( {description} )"));
        factory.set_shared(true);
        let elements: Arc<Mutex<Vec<glib::WeakRef<gst::Element>>>> = Arc::default();
        let seen = elements.clone();
        factory.connect_media_configure(move |_, media| {
            let Ok(bin) = media.element().downcast::<gst::Bin>() else { return };
            if let Ok(mut seen) = seen.lock() {
                seen.retain(|w| w.upgrade().is_some());
                for name in [chain::SR, chain::RECOVER] {
                    if let Some(e) = bin.by_name(name) {
                        seen.push(e.downgrade());
                    }
                }
            }
        });
        server.mount_points().ok_or_else(|| anyhow!("the RTSP server has no mount points"))?.add_factory(mount, factory);

        let context = glib::MainContext::new();
        let source = server.attach(Some(&context)).context("cannot listen (address or port in use?)")?;
        let bound = server.bound_port();
        let port = u16::try_from(bound).map_err(|_| anyhow!("the RTSP server reports port {bound}"))?;
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let running = main_loop.clone();
        let thread = std::thread::Builder::new().name("nerve-preview-rtsp".into()).spawn(move || running.run())?;
        Ok(Self { port, mount: mount.to_owned(), context, main_loop, thread: Some(thread), source: Some(source), elements })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        format!("rtsp://127.0.0.1:{}{}", self.port, self.mount)
    }

    /// `stats` of every live enhancement element (nervesr-stats, nerverecover's), in media order.
    pub fn stats(&self) -> Vec<gst::Structure> {
        let Ok(seen) = self.elements.lock() else { return Vec::new() };
        seen.iter().filter_map(|w| w.upgrade()).map(|e| e.property::<gst::Structure>("stats")).collect()
    }

    /// Blocks until the server is stopped from another thread or the process ends.
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PreviewServer {
    fn drop(&mut self) {
        // (SourceId::remove would look in the default context, not the server's.)
        if let Some(source) = self.source.take()
            && let Some(s) = self.context.find_source_by_id(&source)
        {
            s.destroy();
        }
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
