# Raspberry Pi Pico W window keypad (RP2040 + CYW43 Wi-Fi), five keys wired
# to ground with internal pull-ups, the same OLED module as the ESP32-S3 board.
# Key order: index 0 = 非常满意 (5 stars) ... index 4 = 非常不满意 (1 star).
# Numbers are GPn (the GP labels on the board's silkscreen).
KEY_PINS = (10, 11, 12, 13, 14)
KEYS_ACTIVE_LOW = True  # pressed pulls the pin to ground
LED_PIN = "LED"  # the Pico W's own LED (wired to the CYW43 chip, not a GPIO)
BUZZER_PIN = 15
DISPLAY = "ssd1306"  # 0.96" OLED module, 128x64, I2C (hardware/ssd1306.py)
DISPLAY_WIDTH = 128
DISPLAY_HEIGHT = 64
DISPLAY_ADDR = 0x3C
I2C_ID = 0  # I2C0 on GP4/GP5 (pins 6 and 7)
I2C_SDA = 4
I2C_SCL = 5
UART_TX = 0  # UART0 on GP0/GP1 (pins 1 and 2): window-PC link, settings window_uart = 0
UART_RX = 1
