//! Diesel table definitions, shared by both backends (the migrations keep the two schemas in
//! step; `tests` check every migration up and down on both).

diesel::table! {
    devices (id) {
        id -> Text,
        oui -> Text,
        product_class -> Text,
        serial_number -> Text,
        manufacturer -> Text,
        model_name -> Text,
        software_version -> Text,
        hardware_version -> Text,
        root_model -> Text,
        cwmp_version -> Text,
        last_inform -> Nullable<BigInt>,
        last_boot -> Nullable<BigInt>,
        last_bootstrap -> Nullable<BigInt>,
        last_source_ip -> Text,
        last_retry_count -> Integer,
        connection_request_url -> Text,
        cr_username -> Nullable<Text>,
        cr_password -> Nullable<Text>,
        cwmp_username -> Nullable<Text>,
        cwmp_ha1 -> Nullable<Text>,
        inform_params -> Nullable<Binary>,
        discovered_at -> Nullable<BigInt>,
        work_epoch -> BigInt,
        work_seen_epoch -> BigInt,
        session_owner -> Nullable<Text>,
        session_expires -> Nullable<BigInt>,
        provisioned -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
        search_sig -> BigInt,
        preset_events -> Text,
        params_delta -> Nullable<Binary>,
    }
}

diesel::table! {
    device_search (device_id, name) {
        device_id -> Text,
        name -> Text,
        value -> Text,
    }
}

diesel::table! {
    /// A copy of `devices.last_inform` (kept by triggers, and on PostgreSQL by the Inform's
    /// statements): the last-inform order and filters read it, so no index of `devices`
    /// names a column every Inform changes.
    device_last_inform (device_id) {
        device_id -> Text,
        last_inform -> Nullable<BigInt>,
    }
}

diesel::table! {
    device_connreq (device_id) {
        device_id -> Text,
        at -> BigInt,
        outcome -> Text,
        message -> Text,
        transport -> Nullable<Text>,
    }
}

diesel::table! {
    device_tags (device_id, tag) {
        device_id -> Text,
        tag -> Text,
    }
}

diesel::table! {
    device_params (device_id) {
        device_id -> Text,
        data -> Binary,
        param_count -> Integer,
        updated_at -> BigInt,
    }
}

diesel::table! {
    tasks (id) {
        id -> BigInt,
        device_id -> Text,
        rpc -> Text,
        args -> Text,
        status -> Text,
        command_key -> Text,
        result -> Nullable<Text>,
        fault_code -> Nullable<Integer>,
        fault_string -> Nullable<Text>,
        fault_detail -> Nullable<Text>,
        attempts -> Integer,
        not_before -> BigInt,
        expires_at -> Nullable<BigInt>,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    faults (id) {
        id -> BigInt,
        device_id -> Text,
        task_id -> Nullable<BigInt>,
        code -> Integer,
        message -> Text,
        detail -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    files (id) {
        id -> Text,
        name -> Text,
        file_type -> Text,
        version -> Text,
        size -> BigInt,
        sha256 -> Text,
        device_id -> Nullable<Text>,
        created_at -> BigInt,
    }
}

diesel::table! {
    users (id) {
        id -> BigInt,
        username -> Text,
        password_hash -> Text,
        role -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> BigInt,
        name -> Text,
        token_hash -> Text,
        role -> Text,
        created_at -> BigInt,
        last_used_at -> Nullable<BigInt>,
        revoked_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_events (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        action -> Text,
        target -> Text,
        detail -> Nullable<Text>,
    }
}

diesel::table! {
    session_log (id) {
        id -> BigInt,
        device_id -> Text,
        started_at -> BigInt,
        ended_at -> BigInt,
        source_ip -> Text,
        events -> Text,
        rpcs -> Text,
        faults -> Text,
        outcome -> Text,
    }
}

diesel::table! {
    cwmp_sessions (id) {
        id -> Text,
        device_id -> Text,
        state -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    settings (key) {
        key -> Text,
        value -> Text,
    }
}

diesel::table! {
    voip_lines (id) {
        id -> BigInt,
        device_id -> Text,
        line -> Integer,
        account -> Text,
        password -> Nullable<Text>,
        revision -> BigInt,
        applied_revision -> BigInt,
        status -> Text,
        device_status -> Nullable<Text>,
        mapping -> Nullable<Text>,
        fault -> Nullable<Text>,
        status_at -> Nullable<BigInt>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    presets (id) {
        id -> BigInt,
        name -> Text,
        filter -> Text,
        priority -> Integer,
        events -> Text,
        spec -> Text,
        revision -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    device_preset_state (device_id) {
        device_id -> Text,
        applied -> Text,
        refused -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    used_links (id) {
        id -> Text,
        expires_at -> BigInt,
    }
}

diesel::table! {
    issued_credentials (device_id) {
        device_id -> Text,
        username -> Text,
        ha1 -> Nullable<Text>,
        state -> Text,
        attempts -> Integer,
        reason -> Text,
        issued_at -> BigInt,
        confirmed_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    console_sessions (id) {
        id -> BigInt,
        token_hash -> Text,
        user_id -> BigInt,
        created_at -> BigInt,
        last_seen_at -> BigInt,
        source_ip -> Text,
    }
}

diesel::table! {
    saved_searches (id) {
        id -> BigInt,
        user_id -> BigInt,
        name -> Text,
        query -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    scheduler_lease (name) {
        name -> Text,
        owner -> Text,
        expires_at -> BigInt,
        acquired_at -> BigInt,
    }
}

diesel::table! {
    schedules (id) {
        id -> BigInt,
        name -> Text,
        spec -> Text,
        enabled -> Integer,
        next_fire_at -> Nullable<BigInt>,
        last_fire_at -> Nullable<BigInt>,
        last_result -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    campaigns (id) {
        id -> BigInt,
        name -> Text,
        state -> Text,
        spec -> Text,
        current_wave -> Integer,
        wave_started_at -> Nullable<BigInt>,
        awaiting_approval -> Integer,
        counted_since -> BigInt,
        reason -> Nullable<Text>,
        created_by -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    campaign_members (campaign_id, device_id) {
        campaign_id -> BigInt,
        device_id -> Text,
        model -> Text,
        wave -> Integer,
        seq -> Integer,
        state -> Text,
        attempts -> Integer,
        task_id -> Nullable<BigInt>,
        from_version -> Text,
        target_version -> Text,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        retry_at -> Nullable<BigInt>,
        step -> Integer,
        steps -> Integer,
        step_version -> Text,
    }
}

diesel::table! {
    campaign_events (id) {
        id -> BigInt,
        campaign_id -> BigInt,
        at -> BigInt,
        device_id -> Nullable<Text>,
        kind -> Text,
        detail -> Text,
    }
}

diesel::table! {
    campaign_webhooks (campaign_id) {
        campaign_id -> BigInt,
        event_cursor -> BigInt,
        attempts -> Integer,
        retry_at -> Nullable<BigInt>,
        delivered -> BigInt,
        failures -> BigInt,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    device_version_counts (product_class, software_version) {
        product_class -> Text,
        software_version -> Text,
        n -> BigInt,
    }
}

diesel::table! {
    session_minutes (minute) {
        minute -> BigInt,
        n -> BigInt,
    }
}

diesel::table! {
    fault_minutes (minute, code) {
        minute -> BigInt,
        code -> Integer,
        n -> BigInt,
    }
}

diesel::joinable!(console_sessions -> users (user_id));
diesel::joinable!(saved_searches -> users (user_id));
diesel::joinable!(campaign_members -> campaigns (campaign_id));
diesel::joinable!(campaign_members -> devices (device_id));
diesel::joinable!(campaign_events -> campaigns (campaign_id));
diesel::joinable!(campaign_webhooks -> campaigns (campaign_id));
diesel::joinable!(voip_lines -> devices (device_id));
diesel::joinable!(device_preset_state -> devices (device_id));
diesel::joinable!(device_tags -> devices (device_id));
diesel::joinable!(device_params -> devices (device_id));
diesel::joinable!(tasks -> devices (device_id));
diesel::joinable!(faults -> devices (device_id));
diesel::joinable!(session_log -> devices (device_id));
diesel::joinable!(device_search -> devices (device_id));
diesel::joinable!(device_connreq -> devices (device_id));
diesel::joinable!(device_last_inform -> devices (device_id));

diesel::allow_tables_to_appear_in_same_query!(
    devices,
    device_last_inform,
    device_tags,
    device_params,
    tasks,
    faults,
    files,
    users,
    api_tokens,
    audit_events,
    session_log,
    cwmp_sessions,
    settings,
    device_search,
    device_connreq,
    voip_lines,
    presets,
    device_preset_state,
    used_links,
    issued_credentials,
    console_sessions,
    saved_searches,
    scheduler_lease,
    campaigns,
    campaign_members,
    campaign_events,
    campaign_webhooks,
    schedules,
);
