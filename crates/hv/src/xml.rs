//! The few facts memwarden needs from a libvirt domain XML, found by a small scanner (no XML
//! crate): the `<memballoon>` element (model, alias, stats period) and a hint of the guest OS.
//! libvirt writes its own XML in a stable, normalized form, which is what this reads.

use memwarden_model::vm::BalloonDevice;

/// `<memballoon model='virtio'> <stats period='10'/> <alias name='balloon0'/> ...`.
pub fn memballoon(xml: &str) -> BalloonDevice {
    let Some(start) = xml.find("<memballoon") else {
        // libvirt adds a virtio balloon by default on x86 unless model='none'; a domain XML
        // without the element has none.
        return BalloonDevice::default();
    };
    let rest = &xml[start..];
    let head_end = rest.find('>').unwrap_or(rest.len());
    let head = &rest[..head_end];
    let body = if head.ends_with('/') {
        ""
    } else {
        let end = rest.find("</memballoon>").unwrap_or(rest.len());
        &rest[head_end..end]
    };
    let model = attr(head, "model");
    let present = model.as_deref() != Some("none");
    let stats_period_s = if present {
        Some(
            element_attr(body, "<stats", "period")
                .and_then(|p| p.parse().ok())
                .unwrap_or(0),
        )
    } else {
        None
    };
    BalloonDevice {
        present,
        path: element_attr(body, "<alias", "name"),
        stats_period_s,
        model,
        autodeflate: None,
        free_page_reporting: None,
    }
}

/// `linux`/`windows` from libosinfo metadata (`<libosinfo:os id="http://microsoft.com/win/10"/>`).
pub fn guest_os(xml: &str) -> Option<String> {
    let id = element_attr(xml, "<libosinfo:os", "id")?;
    Some(if id.contains("microsoft.com/win") {
        "windows".to_string()
    } else {
        "linux".to_string()
    })
}

fn element_attr(text: &str, open: &str, name: &str) -> Option<String> {
    let start = text.find(open)?;
    let rest = &text[start..];
    let end = rest.find('>').unwrap_or(rest.len());
    attr(&rest[..end], name)
}

fn attr(head: &str, name: &str) -> Option<String> {
    for q in ['\'', '"'] {
        let key = format!(" {name}={q}");
        if let Some(i) = head.find(&key) {
            let v = &head[i + key.len()..];
            return v.find(q).map(|e| v[..e].to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_memballoon() {
        let x = "<devices>\n<memballoon model='virtio'>\n<stats period='2'/>\n<alias name='balloon0'/>\n</memballoon>\n</devices>";
        let d = memballoon(x);
        assert!(d.present);
        assert_eq!(d.stats_period_s, Some(2));
        assert_eq!(d.path.as_deref(), Some("balloon0"));
        let none = memballoon("<memballoon model='none'/>");
        assert!(!none.present);
        assert_eq!(none.stats_period_s, None);
        let nostats =
            memballoon("<memballoon model=\"virtio\"><alias name=\"balloon0\"/></memballoon>");
        assert_eq!(nostats.stats_period_s, Some(0));
        assert!(!memballoon("<domain/>").present);
    }

    #[test]
    fn guest_os_hint() {
        assert_eq!(
            guest_os("<libosinfo:os id=\"http://microsoft.com/win/10\"/>").as_deref(),
            Some("windows")
        );
        assert_eq!(guest_os("<domain/>"), None);
    }
}
